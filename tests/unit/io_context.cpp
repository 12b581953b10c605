#include <portico/io_context.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/thread_pool.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/heap_counter.hpp"
#include "support/loopback.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include "support/latch.hpp"
#include <memory>
#include <string_view>
#include <system_error>
#include <cstdint>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using portico::io_context;
using portico::sync_wait;
using portico::task;
using portico::thread_pool;

PORTICO_CO_TEST_CASE("schedule resumes the coroutine on a pool thread", "[io_context]")
{
    CHECK(ctx.running_in_this_thread());
    for (int i = 0; i < 100; ++i) {
        co_await ctx.schedule();
        CHECK(ctx.running_in_this_thread());
    }
    co_return;
}

TEST_CASE("100,000 posts from 4 threads each run exactly once, on a pool thread", "[io_context]")
{
    for (unsigned pool_threads : {1u, 4u}) {
        DYNAMIC_SECTION("pool threads: " << pool_threads)
        {
            constexpr int per_thread = 25'000;
            constexpr int total = 4 * per_thread;
            portico::test::start_system();
            const portico::test::baseline before;
            {
                io_context ctx({pool_threads});
                auto runs = std::make_unique<std::atomic<int>[]>(total);
                std::atomic<int> off_pool{0};
                portico::test::latch all_ran(total);
                {
                    thread_pool pool(ctx, pool_threads);
                    std::vector<std::thread> posters;
                    for (int t = 0; t < 4; ++t) {
                        posters.emplace_back([&, t] {
                            for (int i = 0; i < per_thread; ++i) {
                                const int id = t * per_thread + i;
                                ctx.post([&, id] {
                                    runs[id].fetch_add(1, std::memory_order_relaxed);
                                    if (!ctx.running_in_this_thread()) off_pool.fetch_add(1);
                                    all_ran.count_down();
                                });
                            }
                        });
                    }
                    for (auto& p : posters) p.join();
                    all_ran.wait();
                    ctx.stop();
                }
                int not_once = 0;
                for (int i = 0; i < total; ++i) not_once += runs[i].load() != 1;
                CHECK(not_once == 0);
                CHECK(off_pool.load() == 0);
                const auto stats = ctx.statistics();
                CHECK(stats.posts >= static_cast<std::uint64_t>(total));
                CHECK(stats.outstanding == 0);
            }
            before.check();
        }
    }
}

PORTICO_CO_TEST_CASE("100,000 coroutines posted from 4 threads each resume exactly once", "[io_context]")
{
    constexpr int total = 100'000;
    auto resumed = std::make_unique<std::atomic<int>[]>(total);
    std::atomic<int> off_pool{0};
    portico::task_group group;
    auto one = [](io_context& c, std::atomic<int>& slot, std::atomic<int>& bad) -> task<> {
        co_await c.schedule();
        slot.fetch_add(1, std::memory_order_relaxed);
        if (!c.running_in_this_thread()) bad.fetch_add(1);
    };
    // Four non-pool threads start the coroutines; each schedule() is a post.
    std::vector<std::thread> starters;
    for (int t = 0; t < 4; ++t) {
        starters.emplace_back([&, t] {
            for (int i = t; i < total; i += 4) group.spawn(one(ctx, resumed[i], off_pool));
        });
    }
    for (auto& s : starters) s.join();
    co_await group.join();
    int not_once = 0;
    for (int i = 0; i < total; ++i) not_once += resumed[i].load() != 1;
    CHECK(not_once == 0);
    CHECK(off_pool.load() == 0);
}

TEST_CASE("stop() while work is pending: every coroutine unwinds, counters return to baseline", "[io_context]")
{
    for (unsigned pool_threads : {1u, 4u}) {
        DYNAMIC_SECTION("pool threads: " << pool_threads)
        {
            portico::test::start_system();
            const portico::test::baseline before;
            std::atomic<int> unwound{0};
            std::atomic<int> aborted{0};
            {
                io_context ctx({pool_threads});
                auto sleeper = [](io_context& c, std::atomic<int>& done, std::atomic<int>& ab) -> task<> {
                    auto [ec] = co_await c.sleep_for(1h);
                    if (ec == portico::errc::operation_aborted) ab.fetch_add(1);
                    // A coroutine that tries to start new timed work after
                    // stop() is refused at once, not left hanging.
                    auto [again] = co_await c.sleep_for(1h);
                    if (again == std::errc::operation_canceled) ab.fetch_add(1);
                    done.fetch_add(1);
                };
                auto looper = [](io_context& c, std::atomic<int>& done) -> task<> {
                    // Keeps hopping between pool threads until it sees the stop.
                    while (!c.get_stop_token().stop_requested()) co_await c.schedule();
                    done.fetch_add(1);
                };
                portico::test::latch started(1);
                {
                    thread_pool pool(ctx, pool_threads);
                    for (int i = 0; i < 100; ++i) ctx.spawn(sleeper(ctx, unwound, aborted));
                    for (int i = 0; i < 4; ++i) ctx.spawn(looper(ctx, unwound));
                    ctx.post([&] { started.count_down(); });
                    started.wait();
                    CHECK(ctx.outstanding_work() > 0);
                    ctx.stop();
                    pool.join(); // returns only once everything drained
                }
                CHECK(ctx.outstanding_work() == 0);
                CHECK(ctx.statistics().outstanding == 0);
            }
            CHECK(unwound.load() == 104);
            CHECK(aborted.load() == 200);
            before.check();
        }
    }
}

TEST_CASE("run() returns at once when stopped with nothing outstanding", "[io_context]")
{
    io_context ctx;
    ctx.stop();
    ctx.run();
    ctx.run(); // and again: stopping is idempotent
    CHECK(ctx.stopped());
    CHECK(ctx.outstanding_work() == 0);
}

TEST_CASE("run() called again and again takes over the counters of the last one: the context does not grow",
          "[io_context]")
{
    io_context ctx({1});
    for (int i = 0; i < 10; ++i) ctx.post([] {});
    ctx.stop();
    ctx.run();
    const auto first = ctx.statistics();
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    const std::size_t live = portico::test::live_heap_bytes();
#endif
    for (int i = 0; i < 100; ++i) ctx.run();
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    // (Not under ThreadSanitizer, whose operator new cannot be replaced.)
    CHECK(portico::test::live_heap_bytes() == live);
#endif
    // The first run's counts are kept, and every later run's added: on
    // Windows each posts one wake-up as it leaves. On io_uring none does:
    // stop() and the drain already woke every thread, each in its own ring.
    const auto later = ctx.statistics();
    CHECK(later.completions >= first.completions);
#if PORTICO_BACKEND_URING
    CHECK(later.posts == first.posts);
#else
    CHECK(later.posts == first.posts + 100);
#endif
}

PORTICO_CO_TEST_CASE("a post the port refuses is retried, never lost", "[io_context]")
{
    const auto before = ctx.statistics();
    portico::detail::context_access::scheduler(ctx).inject_post_failures(10);
    for (int i = 0; i < 1000; ++i) {
        co_await ctx.schedule();
        CHECK(ctx.running_in_this_thread());
    }
    const auto after = ctx.statistics();
    CHECK(after.post_failures - before.post_failures == 10);
}

TEST_CASE("a refused post from outside the pool still runs while every pool thread sleeps", "[io_context]")
{
    io_context ctx({1});
    std::atomic<int> ran{0};
    {
        thread_pool pool(ctx, 2);
        portico::detail::context_access::scheduler(ctx).inject_post_failures(3);
        portico::test::latch done(3);
        // The pool threads are blocked in the dequeue with nothing to wake
        // them: only the fallback retry can deliver these.
        for (int i = 0; i < 3; ++i) {
            ctx.post([&] {
                ran.fetch_add(1);
                done.count_down();
            });
        }
        done.wait();
        ctx.stop();
    }
    CHECK(ran.load() == 3);
    CHECK(ctx.statistics().post_failures == 3);
}

TEST_CASE("running_threads counts the threads inside run()", "[io_context]")
{
    io_context ctx({2});
    CHECK(ctx.statistics().running_threads == 0);
    std::uint64_t seen_inside = 0;
    ctx.post([&] { seen_inside = ctx.statistics().running_threads; });
    ctx.stop();
    ctx.run(); // this thread alone: the post runs here
    CHECK(seen_inside == 1);
    CHECK(ctx.statistics().running_threads == 0);

    io_context pooled({2});
    {
        thread_pool pool(pooled, 2);
        // Returns only once both pool threads are counted.
        portico::test::wait_for_pool(pooled, 2);
        CHECK(pooled.statistics().running_threads == 2);
        pooled.stop();
        pool.join();
    }
    CHECK(pooled.statistics().running_threads == 0);
}

TEST_CASE("completions are dequeued in batches", "[io_context]")
{
    io_context ctx({1});
    std::atomic<int> ran{0};
    // Queue 1,000 packets before any thread dequeues, so batches fill up.
    for (int i = 0; i < 1000; ++i) ctx.post([&] { ran.fetch_add(1); });
    ctx.stop();
    ctx.run();
    CHECK(ran.load() == 1000);
    const auto stats = ctx.statistics();
    CHECK(stats.max_batch == 64);
    CHECK(stats.completions >= 1000);
    CHECK(stats.dequeue_calls <= 1000 / 64 + 3);
    CHECK(stats.completions_per_batch() > 10.0);
}

PORTICO_CO_TEST_CASE("spawned work runs on the pool and observes the context's stop token", "[io_context]")
{
    std::atomic<bool> on_pool{false};
    portico::test::latch ran(1);
    ctx.spawn([](io_context& c, std::atomic<bool>& flag, portico::test::latch& l) -> task<> {
        flag = c.running_in_this_thread();
        const portico::stop_token token = co_await portico::get_stop_token();
        CHECK(token == c.get_stop_token());
        l.count_down();
    }(ctx, on_pool, ran));
    // Not a sleep: wait on the latch from a pool thread would block it, so
    // hop until the spawned task reports.
    while (!ran.try_wait()) co_await ctx.schedule();
    CHECK(on_pool.load());
}

namespace {

/// Suspends the awaiting coroutine and hands it to io_context::defer.
struct defer_here {
    io_context& ctx;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) const { ctx.defer(h); }
    void await_resume() const noexcept {}
};

} // namespace

TEST_CASE("defer resumes on the same pool thread once the handler returns, before the next completion", "[io_context]")
{
    io_context ctx({1});
    std::vector<const char*> order;
    std::thread::id before_defer, after_defer;
    std::uint64_t dequeues_before = 0, dequeues_after = 0;
    {
        thread_pool pool(ctx, 1);
        sync_wait([](io_context& c, std::vector<const char*>& log, std::thread::id& t0, std::thread::id& t1,
                     std::uint64_t& d0, std::uint64_t& d1) -> task<> {
            co_await c.schedule();
            log.push_back("handler");
            // Queued in the port first; the deferred coroutine still runs before it.
            c.post([&log] { log.push_back("posted"); });
            t0 = std::this_thread::get_id();
            d0 = c.statistics().dequeue_calls;
            co_await defer_here{c};
            t1 = std::this_thread::get_id();
            d1 = c.statistics().dequeue_calls;
            log.push_back("deferred");
            co_await c.schedule(); // after the posted function
        }(ctx, order, before_defer, after_defer, dequeues_before, dequeues_after));
        ctx.stop();
    }
    REQUIRE(order.size() == 3);
    CHECK(std::string_view(order[0]) == "handler");
    CHECK(std::string_view(order[1]) == "deferred");
    CHECK(std::string_view(order[2]) == "posted");
    CHECK(before_defer == after_defer);
    CHECK(dequeues_before == dequeues_after);
}

TEST_CASE("defer from a thread outside the pool posts the coroutine to the pool", "[io_context]")
{
    io_context ctx({1});
    bool resumed_on_pool = false;
    {
        thread_pool pool(ctx, 1);
        // sync_wait starts the coroutine on this (main) thread.
        sync_wait([](io_context& c, bool& on_pool) -> task<> {
            co_await defer_here{c};
            on_pool = c.running_in_this_thread();
        }(ctx, resumed_on_pool));
        ctx.stop();
    }
    CHECK(resumed_on_pool);
}

// --- idle_spin: a pool thread with nothing to run looks for work before it
// blocks. Each test gives the spin far longer than the test needs, so a
// thread that blocked anyway (idle_waits) is a spin that missed its work,
// not a slow machine; a spin that missed it for good ends the test after the
// spin, with the check failed.

namespace {

io_context::options spinning_for(std::chrono::microseconds spin)
{
    io_context::options options;
    options.idle_spin = spin;
    return options;
}

} // namespace

TEST_CASE("idle_spin: a thread finds its timer while it spins, and never blocks", "[io_context][idle_spin]")
{
    portico::io_statistics before, after;
    portico::test::run_co_test(
        1,
        [&](io_context& ctx, unsigned) -> task<> {
            before = ctx.statistics();
            for (int i = 0; i < 3; ++i) co_await ctx.sleep_for(20ms);
            after = ctx.statistics();
        },
        spinning_for(20s));
    CHECK(after.idle_waits - before.idle_waits == 0);
    CHECK(after.spin_finds - before.spin_finds >= 3);
    CHECK(after.timers_fired - before.timers_fired == 3);
}

namespace {

// Echoes 50 messages of 64 bytes back to the sender; returns the bytes echoed.
task<std::size_t> echo_50(portico::tcp_socket socket)
{
    std::array<std::byte, 64> buffer{};
    std::size_t echoed = 0;
    for (int i = 0; i < 50; ++i) {
        auto [ec, n] = co_await socket.read_all(portico::buffer(buffer));
        if (ec) break;
        auto [write_ec, written] = co_await socket.write_all(portico::buffer(buffer));
        if (write_ec) break;
        echoed += written;
    }
    co_return echoed;
}

} // namespace

TEST_CASE("idle_spin: a thread that spins sees the completions of its sockets, and never blocks",
          "[io_context][idle_spin]")
{
    // The echo runs in a context of its own, on another thread: each answer
    // comes while the spinning thread has nothing else to do.
    io_context peer;
    std::atomic<std::size_t> echoed{0};
    portico::io_statistics before, after;
    {
        thread_pool peer_pool(peer, 1);
        // The peer's thread makes what it holds while it runs (its ring, on
        // Linux) before the test counts the process's handles.
        portico::test::wait_for_pool(peer, 1);
        portico::test::run_co_test(
            1,
            [&](io_context& ctx, unsigned) -> task<> {
                portico::test::raw_listener listener;
                portico::tcp_socket client(ctx);
                auto [connect_ec] = co_await client.connect(listener.local());
                if (connect_ec) throw std::system_error(connect_ec, "connect");
                peer.spawn([](portico::tcp_socket s, std::atomic<std::size_t>& total) -> task<> {
                    total.store(co_await echo_50(std::move(s)));
                }(listener.accept(peer), echoed));
                before = ctx.statistics();
                std::array<std::byte, 64> buffer{};
                std::size_t received = 0;
                for (int i = 0; i < 50; ++i) {
                    buffer.fill(static_cast<std::byte>(i));
                    auto [ec, n] = co_await client.write_all(portico::buffer(buffer));
                    if (ec) break;
                    auto [read_ec, got] = co_await client.read_all(portico::buffer(buffer));
                    if (read_ec || buffer[63] != static_cast<std::byte>(i)) break;
                    received += got;
                }
                after = ctx.statistics();
                CHECK(received == 50 * 64);
            },
            spinning_for(20s));
        peer.stop();
    }
    CHECK(echoed.load() == 50 * 64);
    CHECK(after.idle_waits - before.idle_waits == 0);
    CHECK(after.spin_finds - before.spin_finds >= 1);
    CHECK(after.recv_calls - before.recv_calls >= 50);
}

TEST_CASE("idle_spin: posts from outside the pool reach a thread that spins, refused ones too",
          "[io_context][idle_spin]")
{
    for (unsigned refused : {0u, 3u}) {
        DYNAMIC_SECTION("posts the port refuses: " << refused)
        {
            io_context ctx(spinning_for(20s));
            portico::io_statistics before;
            int ran = 0;
            {
                thread_pool pool(ctx, 1);
                portico::test::wait_for_pool(ctx, 1);
                before = ctx.statistics();
                portico::detail::context_access::scheduler(ctx).inject_post_failures(refused);
                for (int i = 0; i < 20; ++i) {
                    // Each post waits for the one before, so the thread has
                    // gone idle again (or is on its way) when it comes.
                    portico::test::latch done(1);
                    ctx.post([&] {
                        ++ran;
                        done.count_down();
                    });
                    done.wait();
                }
                const auto after = ctx.statistics();
                CHECK(after.idle_waits - before.idle_waits == 0);
                CHECK(after.post_failures - before.post_failures == refused);
                ctx.stop();
            }
            CHECK(ran == 20);
        }
    }
}

TEST_CASE("idle_spin: a spin that finds nothing ends, and the thread blocks", "[io_context][idle_spin]")
{
    for (auto spin : {std::chrono::microseconds(0), std::chrono::microseconds(1000)}) {
        DYNAMIC_SECTION("spin: " << spin.count() << " us")
        {
            io_context ctx(spinning_for(spin));
            thread_pool pool(ctx, 1);
            // Nothing to run, ever: the thread blocks once its spin is over.
            const auto give_up = std::chrono::steady_clock::now() + 30s;
            while (ctx.statistics().idle_waits == 0 && std::chrono::steady_clock::now() < give_up) {
                std::this_thread::yield();
            }
            CHECK(ctx.statistics().idle_waits >= 1);
            CHECK(ctx.statistics().spin_finds == 0);
            ctx.stop();
        }
    }
}

TEST_CASE("idle_spin: stop() ends the run() of a thread that spins", "[io_context][idle_spin]")
{
    // A spin of two minutes: a stop the spin missed keeps run() going that
    // long, well past the check below.
    io_context ctx(spinning_for(120s));
    std::atomic<bool> returned{false};
    std::thread runner([&] {
        ctx.run();
        returned.store(true);
    });
    portico::test::wait_for_pool(ctx, 1);
    ctx.stop();
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (!returned.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    CHECK(returned.load());
    runner.join();
    CHECK(ctx.statistics().idle_waits == 0);
}

TEST_CASE("idle_spin: the longest spin is a day, not a deadline that overflows the clock", "[io_context][idle_spin]")
{
    // Unclamped, now() + microseconds::max() wraps into the past: the spin
    // would end at its first clock read and the thread would block.
    io_context ctx(spinning_for(std::chrono::microseconds::max()));
    portico::io_statistics before;
    {
        thread_pool pool(ctx, 1);
        portico::test::wait_for_pool(ctx, 1);
        before = ctx.statistics();
        for (int i = 0; i < 5; ++i) {
            portico::test::latch done(1);
            ctx.post([&] { done.count_down(); });
            done.wait();
        }
        CHECK(ctx.statistics().idle_waits - before.idle_waits == 0);
        ctx.stop();
    }
}
