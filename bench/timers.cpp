// Timer benchmark: what docs/design/timers.md bases its choice on.
//
// Three measurements, each for portico and for standalone Asio in the same run:
//  1. start + cancel of one timer while 10,000 others are pending (the common
//     server case: a deadline per read that is almost never reached), once
//     with the new deadline later than all pending ones (a fixed read
//     timeout) and once earlier than all of them (the worst case: every
//     start changes when the timer thread must wake);
//  2. lateness of 10,000 timers expiring over 200 ms (p50, p99);
//  3. the bare queue: insert + erase with N pending, binary heap (portico's)
//     versus a balanced tree (std::multimap), no threads involved.
// Runs under Wine; prints a table and the portico/Asio ratios (>1: portico
// faster). Numbers from a shared 2-core machine: compare ratios, not absolutes.

#include <portico/detail/timer_heap.hpp>
#include <portico/io_context.hpp>
#include <portico/thread_pool.hpp>

#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <chrono>
#include <deque>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace win = portico::detail::win;

constexpr int pending_count = 10'000;
constexpr int cancel_rounds = 200'000;
constexpr int expiry_count = 10'000;

double seconds_since(clock_type::time_point start)
{
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

// A timer op that only counts its completion.
struct counting_timer : win::timer_op {
    explicit counting_timer(std::atomic<int>* c) : win::timer_op(&counting_timer::done), counter(c) {}
    static void done(win::overlapped_op* op, std::uintptr_t, std::uint32_t) noexcept
    {
        static_cast<counting_timer*>(static_cast<win::timer_op*>(op))->counter->fetch_add(1, std::memory_order_relaxed);
    }
    std::atomic<int>* counter;
};

// 1. start + cancel, portico: the timer service's add/cancel, completion
// dispatched by a pool thread, exactly what a cancelled sleep_op does.
double portico_start_cancel(bool earliest)
{
    portico::io_context ctx({1});
    auto& sched = portico::detail::context_access::scheduler(ctx);
    std::atomic<int> completed{0};
    std::vector<std::unique_ptr<counting_timer>> pending;
    for (int i = 0; i < pending_count; ++i) {
        pending.push_back(std::make_unique<counting_timer>(&completed));
        pending.back()->deadline = clock_type::now() + 1min + std::chrono::microseconds(i);
        sched.work_started();
        sched.timers().add(pending.back().get());
    }
    portico::thread_pool pool(ctx, 1);
    std::deque<counting_timer> ops; // stable addresses, no per-timer allocation call
    const auto start = clock_type::now();
    for (int i = 0; i < cancel_rounds; ++i) {
        auto& op = ops.emplace_back(&completed);
        op.deadline = clock_type::now() + (earliest ? 30s : 1h);
        sched.work_started();
        sched.timers().add(&op);
        sched.timers().cancel(&op);
    }
    while (completed.load() < cancel_rounds) std::this_thread::yield();
    const double elapsed = seconds_since(start);
    ctx.stop();
    pool.join();
    return cancel_rounds / elapsed;
}

double asio_start_cancel(bool earliest)
{
    asio::io_context ctx(1);
    auto guard = asio::make_work_guard(ctx);
    std::atomic<int> completed{0};
    std::vector<std::unique_ptr<asio::steady_timer>> pending;
    for (int i = 0; i < pending_count; ++i) {
        pending.push_back(std::make_unique<asio::steady_timer>(ctx, 1min + std::chrono::microseconds(i)));
        pending.back()->async_wait([](std::error_code) {});
    }
    std::thread runner([&] { ctx.run(); });
    std::deque<asio::steady_timer> timers; // as for portico: stable, no per-timer allocation call
    const auto start = clock_type::now();
    for (int i = 0; i < cancel_rounds; ++i) {
        auto& t = timers.emplace_back(ctx, earliest ? 30s : 1h);
        t.async_wait([&](std::error_code) { completed.fetch_add(1, std::memory_order_relaxed); });
        t.cancel();
    }
    while (completed.load() < cancel_rounds) std::this_thread::yield();
    const double elapsed = seconds_since(start);
    for (auto& t : pending) t->cancel();
    guard.reset();
    ctx.stop();
    runner.join();
    return cancel_rounds / elapsed;
}

struct lateness {
    double p50_ms;
    double p99_ms;
};

lateness summarize(std::vector<double>& late)
{
    std::sort(late.begin(), late.end());
    return {late[late.size() / 2], late[late.size() * 99 / 100]};
}

// 2. expiry lateness: 10,000 timers spread over 200 ms.
lateness portico_expiry()
{
    portico::io_context ctx({1});
    auto& sched = portico::detail::context_access::scheduler(ctx);
    struct probe : win::timer_op {
        probe() : win::timer_op(&probe::done) {}
        static void done(win::overlapped_op* op, std::uintptr_t, std::uint32_t) noexcept
        {
            auto* self = static_cast<probe*>(static_cast<win::timer_op*>(op));
            self->late_ms = std::chrono::duration<double, std::milli>(clock_type::now() - self->deadline).count();
            self->count->fetch_add(1, std::memory_order_release);
        }
        double late_ms = 0;
        std::atomic<int>* count = nullptr;
    };
    std::atomic<int> fired{0};
    std::vector<probe> probes(expiry_count);
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> spread(0, 200'000);
    portico::thread_pool pool(ctx, 1);
    const auto base = clock_type::now() + 20ms;
    for (auto& p : probes) {
        p.count = &fired;
        p.deadline = base + std::chrono::microseconds(spread(rng));
        sched.work_started();
        sched.timers().add(&p);
    }
    while (fired.load(std::memory_order_acquire) < expiry_count) std::this_thread::sleep_for(1ms);
    ctx.stop();
    pool.join();
    std::vector<double> late;
    for (auto& p : probes) late.push_back(p.late_ms);
    return summarize(late);
}

lateness asio_expiry()
{
    asio::io_context ctx(1);
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    std::vector<double> late(expiry_count);
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> spread(0, 200'000);
    const auto base = clock_type::now() + 20ms;
    for (int i = 0; i < expiry_count; ++i) {
        const auto deadline = base + std::chrono::microseconds(spread(rng));
        timers.push_back(std::make_unique<asio::steady_timer>(ctx, deadline));
        timers.back()->async_wait([&late, i, deadline](std::error_code) {
            late[static_cast<std::size_t>(i)] =
                std::chrono::duration<double, std::milli>(clock_type::now() - deadline).count();
        });
    }
    ctx.run();
    return summarize(late);
}

// 3. the bare queue.
double heap_ns(int pending, int rounds)
{
    std::vector<portico::detail::timer_node> nodes(static_cast<std::size_t>(pending + 1));
    portico::detail::timer_heap heap;
    std::mt19937 rng(2);
    std::uniform_int_distribution<int> when(0, 1'000'000);
    for (int i = 0; i < pending; ++i) {
        nodes[static_cast<std::size_t>(i)].deadline = clock_type::time_point{} + std::chrono::microseconds(when(rng));
        heap.push(&nodes[static_cast<std::size_t>(i)]);
    }
    auto& probe = nodes.back();
    const auto start = clock_type::now();
    for (int i = 0; i < rounds; ++i) {
        probe.deadline = clock_type::time_point{} + std::chrono::microseconds(when(rng));
        heap.push(&probe);
        heap.erase(&probe);
    }
    return seconds_since(start) * 1e9 / rounds;
}

double tree_ns(int pending, int rounds)
{
    std::multimap<clock_type::time_point, int> tree;
    std::mt19937 rng(2);
    std::uniform_int_distribution<int> when(0, 1'000'000);
    for (int i = 0; i < pending; ++i) tree.emplace(clock_type::time_point{} + std::chrono::microseconds(when(rng)), i);
    const auto start = clock_type::now();
    for (int i = 0; i < rounds; ++i) {
        auto it = tree.emplace(clock_type::time_point{} + std::chrono::microseconds(when(rng)), -1);
        tree.erase(it);
    }
    return seconds_since(start) * 1e9 / rounds;
}

} // namespace

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("portico timer benchmark (%d pending timers; Wine; one pool thread each)\n\n", pending_count);

    std::printf("%-44s %12s %12s %8s\n", "scenario", "portico", "asio", "ratio");
    for (bool earliest : {false, true}) {
        const double p_cancel = portico_start_cancel(earliest);
        const double a_cancel = asio_start_cancel(earliest);
        std::printf("%-44s %12.0f %12.0f %8.2f\n",
                    earliest ? "start+cancel, new earliest, timers/s" : "start+cancel, new latest, timers/s", p_cancel,
                    a_cancel, p_cancel / a_cancel);
    }

    const auto p_late = portico_expiry();
    const auto a_late = asio_expiry();
    std::printf("%-44s %12.3f %12.3f %8.2f\n", "expiry lateness p50, ms (lower is better)", p_late.p50_ms,
                a_late.p50_ms, a_late.p50_ms / p_late.p50_ms);
    std::printf("%-44s %12.3f %12.3f %8.2f\n", "expiry lateness p99, ms (lower is better)", p_late.p99_ms,
                a_late.p99_ms, a_late.p99_ms / p_late.p99_ms);

    std::printf("\n%-44s %12s %12s %8s\n", "queue insert+erase, ns (lower is better)", "binary heap", "rb-tree",
                "ratio");
    for (int pending : {1'000, 10'000, 100'000}) {
        const double h = heap_ns(pending, 1'000'000);
        const double t = tree_ns(pending, 1'000'000);
        std::printf("%-44d %12.1f %12.1f %8.2f\n", pending, h, t, t / h);
    }
    return 0;
}
