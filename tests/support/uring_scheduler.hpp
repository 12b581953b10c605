// The Linux backend's scheduler with threads inside run() for one test: the
// tests of detail/uring that need completions taken while they wait.
#pragma once

#include <portico/detail/uring/scheduler.hpp>

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

} // namespace portico::test
