// The Linux backend's scheduler with threads inside run() for one test: the
// tests of detail/uring that need completions taken while they wait.
#pragma once

#include <portico/detail/uring/operation.hpp>
#include <portico/detail/uring/scheduler.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace portico::test {

/// `threads` threads in sched.run() from construction to destruction, which
/// stops the scheduler and joins them once its work is done.
struct running_uring_scheduler {
    explicit running_uring_scheduler(unsigned threads = 2)
    {
        sched.work_started(); // keeps run() in until the destructor's stop
        for (unsigned i = 0; i < threads; ++i) workers.emplace_back([this] { sched.run(); });
    }
    running_uring_scheduler(const running_uring_scheduler&) = delete;
    running_uring_scheduler& operator=(const running_uring_scheduler&) = delete;
    ~running_uring_scheduler()
    {
        sched.stop();
        sched.work_finished();
        for (auto& t : workers) t.join();
    }

    detail::uring::scheduler sched;
    std::vector<std::thread> workers;
};

/// Waits until `done()` holds or `limit` has passed; true if it holds. A
/// wake-up that never comes then fails a check instead of hanging the run.
template <class Done>
bool wait_until(Done done, std::chrono::milliseconds limit = std::chrono::seconds(10))
{
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::yield();
    }
    return true;
}

/// Runs `fn` on the thread of ring `index` (scheduler::post_to) and returns
/// once it has run.
template <class Fn>
void on_ring(detail::uring::scheduler& s, unsigned index, Fn fn)
{
    struct step : detail::uring::operation {
        explicit step(Fn& f) noexcept : operation(&step::run), fn(f) {}
        static void run(operation* base, std::uintptr_t, std::uint32_t) noexcept
        {
            auto& self = *static_cast<step*>(base);
            self.fn();
            self.ran.store(true);
        }
        Fn& fn;
        std::atomic<bool> ran{false};
    } op(fn);
    s.work_started();
    s.post_to(index, &op);
    while (!op.ran.load()) std::this_thread::yield();
}

} // namespace portico::test
