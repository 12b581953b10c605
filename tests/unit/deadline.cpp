#include <portico/deadline.hpp>
#include <portico/stop_token.hpp>

#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/loopback.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

using namespace std::chrono_literals;
using portico::errc;
using portico::io_context;
using portico::io_result;
using portico::task;
using clock_type = std::chrono::steady_clock;

PORTICO_CO_TEST_CASE("sleep_for resumes on a pool thread, never before its deadline", "[timer]")
{
    const auto start = clock_type::now();
    auto [ec] = co_await ctx.sleep_for(20ms);
    CHECK_FALSE(ec);
    CHECK(clock_type::now() - start >= 20ms);
    CHECK(ctx.running_in_this_thread());

    const auto deadline = clock_type::now() + 15ms;
    auto [ec2] = co_await ctx.sleep_until(deadline);
    CHECK_FALSE(ec2);
    CHECK(clock_type::now() >= deadline);
}

PORTICO_CO_TEST_CASE("a sleep with a deadline already past completes at once", "[timer]")
{
    const auto before = ctx.statistics();
    auto [ec] = co_await ctx.sleep_for(0ms);
    CHECK_FALSE(ec);
    auto [ec2] = co_await ctx.sleep_until(clock_type::now() - 1s);
    CHECK_FALSE(ec2);
    CHECK(ctx.statistics().timers_started == before.timers_started);
}

PORTICO_CO_TEST_CASE("timers fire in deadline order, equal deadlines in start order", "[timer]")
{
    // 50 timers started in shuffled order; deadlines 10 ms apart, plus pairs
    // of equal deadlines. Each records when its deadline was and when it ran.
    std::vector<int> offsets;
    for (int i = 0; i < 50; ++i) offsets.push_back(i / 2); // pairs share a deadline
    std::mt19937 rng(7);
    std::shuffle(offsets.begin(), offsets.end(), rng);

    const auto t0 = clock_type::now() + 50ms;
    std::mutex m;
    std::vector<std::pair<clock_type::time_point, int>> fired; // (deadline, start index)
    int early = 0;
    portico::task_group group;
    for (int i = 0; i < 50; ++i) {
        const auto deadline = t0 + offsets[static_cast<std::size_t>(i)] * 10ms;
        group.spawn([](io_context& c, clock_type::time_point d, int index, std::mutex& mu,
                       std::vector<std::pair<clock_type::time_point, int>>& out, int& too_early) -> task<> {
            auto [ec] = co_await c.sleep_until(d);
            std::lock_guard lock(mu);
            if (ec || clock_type::now() < d) ++too_early;
            out.emplace_back(d, index);
        }(ctx, deadline, i, m, fired, early));
    }
    co_await group.join();
    CHECK(early == 0);
    REQUIRE(fired.size() == 50);
    if (threads == 1) {
        // One thread dequeues the port in FIFO order, so the order is exact.
        CHECK(std::is_sorted(fired.begin(), fired.end()));
    }
}

PORTICO_CO_TEST_CASE("cancelling a pending sleep resumes it once with operation_aborted", "[timer]")
{
    const auto before = ctx.statistics();
    portico::stop_source source;
    auto sleeper = ctx.sleep_for(1h);
    auto sleeping = [](io_context& c) -> task<io_result<void>> { co_return co_await c.sleep_for(1h); }(ctx);
    sleeping.set_stop_token(source.get_token());
    auto canceller = [](io_context& c, portico::stop_source& s) -> task<> {
        co_await c.sleep_for(10ms);
        s.request_stop();
    };
    const auto start = clock_type::now();
    auto [result, ignored] = co_await portico::when_all(std::move(sleeping), canceller(ctx, source));
    (void)ignored;
    (void)sleeper;
    CHECK(result.error() == errc::operation_aborted);
    CHECK(result.error() == std::errc::operation_canceled);
    CHECK(clock_type::now() - start < 30min);
    const auto after = ctx.statistics();
    CHECK(after.timers_cancelled - before.timers_cancelled == 1);
}

PORTICO_CO_TEST_CASE("a sleep whose token is already stopped never starts", "[timer]")
{
    const auto before = ctx.statistics();
    portico::stop_source source;
    source.request_stop();
    auto t = [](io_context& c) -> task<io_result<void>> { co_return co_await c.sleep_for(1h); }(ctx);
    t.set_stop_token(source.get_token());
    auto [ec] = co_await std::move(t);
    CHECK(ec == errc::operation_aborted);
    CHECK(ctx.statistics().timers_started == before.timers_started);
}

PORTICO_CO_TEST_CASE("every started timer ends fired or cancelled, even when stopped as it starts", "[timer]")
{
    // A stop request from another pool thread races each sleep's start; one
    // that lands between the stop callback's registration and the timer
    // service's add() must still be counted as cancelled.
    const auto before = ctx.statistics();
    unsigned aborted = 0;
    for (int i = 0; i < 2000; ++i) {
        auto source = std::make_shared<portico::stop_source>();
        auto sleeping = [](io_context& c) -> task<io_result<void>> { co_return co_await c.sleep_for(1h); }(ctx);
        sleeping.set_stop_token(source->get_token());
        ctx.post([source] { source->request_stop(); });
        auto [ec] = co_await std::move(sleeping);
        if (ec == errc::operation_aborted) ++aborted;
    }
    CHECK(aborted == 2000);
    const auto after = ctx.statistics();
    const auto started = after.timers_started - before.timers_started;
    const auto ended = (after.timers_fired - before.timers_fired) + (after.timers_cancelled - before.timers_cancelled);
    CHECK(started == ended);
    CHECK(portico::detail::context_access::scheduler(ctx).timers().pending() == 0);
}

PORTICO_CO_TEST_CASE("cancellation after expiry has no effect", "[timer]")
{
    portico::stop_source source;
    auto t = [](io_context& c) -> task<io_result<void>> { co_return co_await c.sleep_for(1ms); }(ctx);
    t.set_stop_token(source.get_token());
    auto [ec] = co_await std::move(t);
    CHECK_FALSE(ec);
    source.request_stop(); // the callback is gone: nothing to cancel, no crash
    CHECK(source.stop_requested());
}

PORTICO_CO_TEST_CASE("cancel racing expiry, 10,000 times: each sleep resumes exactly once", "[timer]")
{
    constexpr int rounds = 10'000;
    std::atomic<int> resumed{0};
    std::atomic<int> fired{0};
    std::atomic<int> cancelled{0};
    portico::task_group group;
    for (int i = 0; i < rounds; ++i) {
        auto source = std::make_shared<portico::stop_source>();
        auto sleeper = [](io_context& c, int us, std::atomic<int>& r, std::atomic<int>& f,
                          std::atomic<int>& x) -> task<> {
            auto [ec] = co_await c.sleep_for(std::chrono::microseconds(us));
            r.fetch_add(1);
            (ec ? x : f).fetch_add(1);
        }(ctx, i % 500, resumed, fired, cancelled);
        sleeper.set_stop_token(source->get_token());
        group.spawn(std::move(sleeper));
        // Cancel from another pool thread at about the same time.
        ctx.post([source] { source->request_stop(); });
    }
    co_await group.join();
    CHECK(resumed.load() == rounds);
    CHECK(fired.load() + cancelled.load() == rounds);
}

PORTICO_CO_TEST_CASE("ten thousand pending timers stay cheap and all cancel", "[timer]")
{
    constexpr int count = 10'000;
    portico::stop_source source;
    std::atomic<int> aborted{0};
    portico::task_group group;
    for (int i = 0; i < count; ++i) {
        auto t = [](io_context& c, int k, std::atomic<int>& a) -> task<> {
            auto [ec] = co_await c.sleep_for(1h + std::chrono::milliseconds(k));
            if (ec == errc::operation_aborted) a.fetch_add(1);
        }(ctx, i, aborted);
        t.set_stop_token(source.get_token());
        group.spawn(std::move(t));
    }
    CHECK(portico::detail::context_access::scheduler(ctx).timers().pending() == static_cast<std::size_t>(count));
    source.request_stop();
    co_await group.join();
    CHECK(aborted.load() == count);
    CHECK(portico::detail::context_access::scheduler(ctx).timers().pending() == 0);
}

PORTICO_CO_TEST_CASE("with_timeout: a timeout that fires yields timed_out", "[timer]")
{
    auto slow = [](io_context& c) -> task<io_result<int>> {
        auto [ec] = co_await c.sleep_for(1h);
        co_return io_result<int>(ec, 0);
    };
    const auto start = clock_type::now();
    auto [ec, value] = co_await portico::with_timeout(ctx, 20ms, slow(ctx));
    CHECK(ec == errc::timed_out);
    CHECK(ec == std::errc::timed_out);
    CHECK(value == 0);
    CHECK(clock_type::now() - start >= 20ms);

    // A task that does not report through io_result gets one around it.
    auto plain = [](io_context& c) -> task<> { co_await c.sleep_for(1h); };
    auto [ec2] = co_await portico::with_timeout(ctx, 5ms, plain(ctx));
    CHECK(ec2 == errc::timed_out);
}

PORTICO_CO_TEST_CASE("with_timeout: a timeout that does not fire keeps the result", "[timer]")
{
    auto quick = [](io_context& c) -> task<io_result<int>> {
        auto [ec] = co_await c.sleep_for(1ms);
        co_return io_result<int>(ec, 42);
    };
    const auto before = ctx.statistics();
    auto [ec, value] = co_await portico::with_timeout(ctx, 1h, quick(ctx));
    CHECK_FALSE(ec);
    CHECK(value == 42);
    auto plain = []() -> task<int> { co_return 9; };
    auto [ec2, nine] = co_await portico::with_timeout(ctx, 1h, plain());
    CHECK_FALSE(ec2);
    CHECK(nine == 9);
    // The unused deadline timers were cancelled (or, for the task that
    // finished at once, never started), not left pending, and none fired.
    CHECK(portico::detail::context_access::scheduler(ctx).timers().pending() == 0);
    const auto after = ctx.statistics();
    CHECK(after.timers_fired == before.timers_fired + 1); // quick()'s own 1 ms sleep
    CHECK(after.timers_cancelled - before.timers_cancelled == after.timers_started - before.timers_started - 1);
}

PORTICO_CO_TEST_CASE("with_timeout passes the awaiter's stop request on", "[timer]")
{
    portico::stop_source source;
    auto guarded = [](io_context& c) -> task<io_result<void>> {
        auto slow = [](io_context& cc) -> task<io_result<void>> { co_return co_await cc.sleep_for(1h); };
        co_return co_await portico::with_timeout(c, 1h, slow(c));
    }(ctx);
    guarded.set_stop_token(source.get_token());
    auto stopper = [](io_context& c, portico::stop_source& s) -> task<> {
        co_await c.sleep_for(5ms);
        s.request_stop();
    };
    auto [result, ignored] = co_await portico::when_all(std::move(guarded), stopper(ctx, source));
    (void)ignored;
    // Stopped from outside, not by the deadline: aborted, not timed_out.
    CHECK(result.error() == errc::operation_aborted);
}

PORTICO_CO_TEST_CASE("after stop(), a deadline in the drain still fires", "[timer]")
{
    // The shutdown the tutorials teach: stop(), then tell each client
    // goodbye and wait at most a while. Before timers kept running during
    // the drain, this read waited for ever.
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    const portico::test::peer_closer bound(client, 10s); // fails the test instead of hanging it
    ctx.stop();
    std::array<char, 8> got{};
    const auto start = std::chrono::steady_clock::now();
    auto [ec, n] = co_await portico::with_timeout(ctx, 200ms, server.read_some(portico::buffer(got)));
    CHECK(ec == portico::errc::timed_out);
    CHECK(n == 0);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    // Work started after stop() by code that does not observe the context's
    // stop token still runs to its end.
    auto [slept] = co_await ctx.sleep_for(10ms);
    CHECK_FALSE(slept);
}

PORTICO_CO_TEST_CASE("stop() cancels the sleeps of spawned work, which observes the context's token", "[timer]")
{
    std::atomic<bool> asleep{false};
    std::atomic<int> aborted{0};
    ctx.spawn([](io_context& c, std::atomic<bool>& started, std::atomic<int>& out) -> task<> {
        started = true;
        auto [ec] = co_await c.sleep_for(1h);
        if (ec == portico::errc::operation_aborted) out.fetch_add(1);
    }(ctx, asleep, aborted));
    while (!asleep.load()) co_await ctx.schedule();
    ctx.stop();
    // Cancelled at once, not in an hour (bounded, so a regression fails
    // rather than hangs).
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (aborted.load() == 0 && std::chrono::steady_clock::now() < until) co_await ctx.schedule();
    CHECK(aborted.load() == 1);
}
