// The io_uring scheduler's first part: posted operations complete once each
// on the threads inside run(), stop() drains, defer() runs after the
// completion, and a post the ring refuses is delayed, never lost.
#include <portico/detail/uring/scheduler.hpp>

#include "support/catch.hpp"
#include "support/uring_scheduler.hpp"

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace uring = portico::detail::uring;
using portico::test::wait_until;

namespace {

/// A posted operation that counts its completions and whether each ran on a
/// thread inside the scheduler's run().
struct counted_op : uring::operation {
    counted_op() noexcept : operation(&counted_op::on_complete) {}

    static void on_complete(operation* base, std::uintptr_t status, std::uint32_t bytes) noexcept
    {
        auto& self = static_cast<counted_op&>(*base);
        self.completions.fetch_add(1, std::memory_order_relaxed);
        if (status != 0 || bytes != 0) self.odd_result = true;
        if (!self.owner->running_in_this_thread()) self.off_pool = true;
    }

    uring::scheduler* owner = nullptr;
    std::atomic<int> completions{0};
    bool odd_result = false;
    bool off_pool = false;
};

/// Runs `threads` threads in s.run() until the returned pool is joined.
struct pool {
    pool(uring::scheduler& s, unsigned threads)
    {
        for (unsigned i = 0; i < threads; ++i) workers.emplace_back([&s] { s.run(); });
    }
    void join()
    {
        for (auto& t : workers) t.join();
    }
    std::vector<std::thread> workers;
};

} // namespace

TEST_CASE("posts from three threads complete once each on the four threads in run()", "[uring]")
{
    uring::scheduler s;
    constexpr std::size_t per_thread = 10'000;
    std::vector<counted_op> ops(3 * per_thread);
    for (auto& op : ops) op.owner = &s;
    // The work of the posts to come: run() may not return before they are done.
    s.work_started();
    pool threads(s, 4);
    std::vector<std::thread> posters;
    for (std::size_t t = 0; t < 3; ++t) {
        posters.emplace_back([&, t] {
            for (std::size_t i = 0; i < per_thread; ++i) s.post(&ops[t * per_thread + i]);
        });
    }
    for (auto& p : posters) p.join();
    s.stop();
    s.work_finished();
    threads.join();

    std::size_t once = 0, off_pool = 0, odd = 0;
    for (const auto& op : ops) {
        once += op.completions.load() == 1 ? 1 : 0;
        off_pool += op.off_pool ? 1 : 0;
        odd += op.odd_result ? 1 : 0;
    }
    CHECK(once == ops.size());
    CHECK(off_pool == 0);
    CHECK(odd == 0);
    CHECK(s.outstanding() == 0);
}

TEST_CASE("stop() with work outstanding returns from run() only once it is done", "[uring]")
{
    uring::scheduler s;
    counted_op late;
    late.owner = &s;
    s.work_started(); // the work `late` stands for, counted before stop()
    s.stop();
    std::thread runner([&] { s.run(); });
    // Only the runner can complete `late`: had run() returned before the
    // post, the count below would stay 0.
    s.post_started(&late);
    runner.join();
    CHECK(late.completions.load() == 1);
    CHECK(s.outstanding() == 0);
}

TEST_CASE("a stopped scheduler with nothing outstanding returns from run() at once on every thread", "[uring]")
{
    uring::scheduler s;
    s.stop();
    pool threads(s, 4);
    threads.join();
    CHECK(s.outstanding() == 0);
}

namespace {

/// Records, on completion, that it ran, then defers `next`: a deferred
/// coroutine stand-in that must run after this completion returns.
struct deferring_op : uring::operation {
    deferring_op() noexcept : operation(&deferring_op::on_complete) {}

    static void on_complete(operation* base, std::uintptr_t, std::uint32_t) noexcept
    {
        auto& self = static_cast<deferring_op&>(*base);
        self.deferred_ok = self.owner->defer(std::noop_coroutine());
        self.completion_thread = std::this_thread::get_id();
    }

    uring::scheduler* owner = nullptr;
    bool deferred_ok = false;
    std::thread::id completion_thread;
};

} // namespace

TEST_CASE("defer() works inside run() and refuses outside it", "[uring]")
{
    uring::scheduler s;
    CHECK_FALSE(s.defer(std::noop_coroutine()));
    CHECK_FALSE(s.running_in_this_thread());
    deferring_op op;
    op.owner = &s;
    s.post(&op);
    s.stop();
    s.run();
    CHECK(op.deferred_ok);
    CHECK(op.completion_thread == std::this_thread::get_id());
    CHECK_FALSE(s.running_in_this_thread());
}

TEST_CASE("posts the ring refuses are delayed, never lost", "[uring]")
{
    uring::scheduler s;
    std::vector<counted_op> ops(100);
    for (auto& op : ops) op.owner = &s;
    s.inject_post_failures(40);
    for (auto& op : ops) s.post(&op);
    s.stop();
    pool threads(s, 2);
    threads.join();
    std::size_t once = 0;
    for (const auto& op : ops) once += op.completions.load() == 1 ? 1 : 0;
    CHECK(once == ops.size());
}

namespace {

using clock_type = std::chrono::steady_clock;

/// A timer that records when and how it completed.
struct recorded_timer : uring::timer_op {
    recorded_timer() noexcept : uring::timer_op(&recorded_timer::on_complete) {}

    static void on_complete(uring::operation* base, std::uintptr_t, std::uint32_t) noexcept
    {
        auto& self = static_cast<recorded_timer&>(static_cast<uring::timer_op&>(*base));
        self.completed_at = clock_type::now();
        self.completions.fetch_add(1, std::memory_order_relaxed);
    }

    clock_type::time_point completed_at{};
    std::atomic<int> completions{0};
};

} // namespace

TEST_CASE("timers fire once each, not before their deadlines; a cancelled one completes as cancelled", "[uring]")
{
    uring::scheduler s;
    pool threads(s, 2);
    std::vector<recorded_timer> timers(40);
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < timers.size(); ++i) {
        // Deadlines out of order: 1 to 40 ms, interleaved.
        timers[i].deadline = start + std::chrono::milliseconds(1 + (i * 17) % 40);
        s.work_started();
        REQUIRE(s.timers().add(&timers[i]));
    }
    // One cancelled while pending, one cancelled before it was added.
    recorded_timer far, never;
    far.deadline = start + std::chrono::hours(1);
    s.work_started();
    REQUIRE(s.timers().add(&far));
    CHECK(s.timers().cancel(&far));
    never.deadline = start + std::chrono::milliseconds(1);
    CHECK_FALSE(s.timers().cancel(&never));
    CHECK_FALSE(s.timers().add(&never));
    s.stop();
    threads.join();

    std::size_t on_time = 0, fired = 0, once = 0;
    for (const auto& t : timers) {
        on_time += t.completed_at >= t.deadline ? 1 : 0;
        fired += t.fired ? 1 : 0;
        once += t.completions.load() == 1 ? 1 : 0;
    }
    CHECK(once == timers.size());
    CHECK(fired == timers.size());
    CHECK(on_time == timers.size());
    CHECK(far.completions.load() == 1);
    CHECK_FALSE(far.fired);
    CHECK(never.completions.load() == 0);
    CHECK(s.timers().pending() == 0);
}

TEST_CASE("statistics count posts, completions and the threads inside run()", "[uring]")
{
    uring::scheduler s;
    s.work_started(); // keeps run() in until the end
    pool threads(s, 2);
    while (s.statistics().running_threads != 2) std::this_thread::yield();
    std::vector<counted_op> ops(100);
    for (auto& op : ops) op.owner = &s;
    for (auto& op : ops) s.post(&op);
    while (s.outstanding() != 1) std::this_thread::yield();
    const portico::io_statistics during = s.statistics();
    s.stop();
    s.work_finished();
    threads.join();
    const portico::io_statistics after = s.statistics();

    CHECK(during.running_threads == 2);
    CHECK(during.posts == 100);
    CHECK(during.post_failures == 0);
    // Each post comes back as one completion (wake-ups add to them).
    CHECK(during.completions >= 100);
    CHECK(during.max_batch >= 1);
    CHECK(after.running_threads == 0);
    CHECK(after.outstanding == 0);
}

namespace {

/// A posted op that records the ring of the pool thread that completes it
/// and, once, posts `next` from there.
struct ring_recording_op : uring::operation {
    ring_recording_op() noexcept : operation(&ring_recording_op::on_complete) {}

    static void on_complete(operation* base, std::uintptr_t, std::uint32_t) noexcept
    {
        auto& self = static_cast<ring_recording_op&>(*base);
        self.ring = static_cast<int>(self.owner->ring_of_this_thread());
        self.thread = std::this_thread::get_id();
        if (self.next != nullptr) self.owner->post(self.next);
        self.done.store(true);
    }

    uring::scheduler* owner = nullptr;
    ring_recording_op* next = nullptr;
    int ring = -1;
    std::thread::id thread;
    std::atomic<bool> done{false};
};

} // namespace

TEST_CASE("a post from a thread outside the pool wakes a pool thread asleep in its own ring", "[uring]")
{
    uring::scheduler s;
    s.work_started(); // keeps run() in until the end
    pool threads(s, 2);
    // Both asleep, each in its own ring: only a wake-up sent to one of them
    // (IORING_OP_MSG_RING) can deliver the post.
    REQUIRE(wait_until([&] { return s.ring_count() == 2 && s.sleeping_threads() == 2; }));
    ring_recording_op op;
    op.owner = &s;
    std::thread([&] { s.post(&op); }).join();
    CHECK(wait_until([&] { return op.done.load(); }));
    s.stop(); // wakes them all, and so delivers the post even if it was lost
    s.work_finished();
    threads.join();
    CHECK(op.done.load());
    CHECK(op.ring >= 0);
    CHECK(s.outstanding() == 0);
}

TEST_CASE("a post made on a pool thread completes on that thread, from its own queue", "[uring]")
{
    uring::scheduler s;
    s.work_started();
    pool threads(s, 2);
    REQUIRE(wait_until([&] { return s.ring_count() == 2; }));
    const std::uint64_t before = s.submissions();
    std::vector<ring_recording_op> chain(50);
    for (std::size_t i = 0; i < chain.size(); ++i) {
        chain[i].owner = &s;
        if (i + 1 < chain.size()) chain[i].next = &chain[i + 1];
    }
    s.post(&chain[0]);
    CHECK(wait_until([&] { return chain.back().done.load(); }));
    s.stop();
    s.work_finished();
    threads.join();
    std::size_t same_thread = 0;
    for (const auto& op : chain) same_thread += op.thread == chain[0].thread ? 1 : 0;
    CHECK(same_thread == chain.size());
    // Posted without the kernel: no request was submitted for them.
    CHECK(s.submissions() == before);
}

TEST_CASE("stop() wakes every thread, each asleep in its own ring", "[uring]")
{
    uring::scheduler s;
    constexpr unsigned n = 4;
    std::atomic<unsigned> returned{0};
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < n; ++i) {
        threads.emplace_back([&] {
            s.run();
            returned.fetch_add(1);
        });
    }
    s.work_started(); // nothing to do: each thread goes to sleep
    REQUIRE(wait_until([&] { return s.ring_count() == n && s.sleeping_threads() == n; }));
    SECTION("stopped with nothing outstanding")
    {
        s.work_finished();
        s.stop();
    }
    SECTION("drained after the stop")
    {
        s.stop();
        // Stopped, one count outstanding: every thread must stay in.
        CHECK(returned.load() == 0);
        s.work_finished();
    }
    const bool all = wait_until([&] { return returned.load() == n; });
    CHECK(all);
    // A thread the wake-up missed is still asleep: post it out, one each,
    // so that a failure ends the test rather than hanging it.
    std::vector<counted_op> rescue(all ? 0 : n);
    for (auto& op : rescue) {
        op.owner = &s;
        s.post(&op);
    }
    for (auto& t : threads) t.join();
    CHECK(s.outstanding() == 0);
}

TEST_CASE("a thread that leaves run() frees its ring for a later run(); threads in run() at once have one each",
          "[uring]")
{
    uring::scheduler s;
    CHECK(s.ring_count() == 0);
    s.work_started();
    {
        pool threads(s, 2);
        REQUIRE(wait_until([&] { return s.statistics().running_threads == 2; }));
        CHECK(s.ring_count() == 2);
        s.stop();
        s.work_finished();
        threads.join();
    }
    // Later runs, one after the other and from other threads, make no ring.
    std::thread([&] { s.run(); }).join();
    s.run();
    pool again(s, 2);
    again.join();
    CHECK(s.ring_count() == 2);
    CHECK(s.statistics().running_threads == 0);
}

TEST_CASE("post_to() hands an op to the thread of the ring it names", "[uring]")
{
    uring::scheduler s;
    s.work_started();
    pool threads(s, 3);
    REQUIRE(wait_until([&] { return s.ring_count() == 3; }));
    std::vector<ring_recording_op> ops(30);
    for (std::size_t i = 0; i < ops.size(); ++i) {
        ops[i].owner = &s;
        s.work_started();
        s.post_to(static_cast<unsigned>(i % 3), &ops[i]);
    }
    CHECK(wait_until([&] {
        for (const auto& op : ops) {
            if (!op.done.load()) return false;
        }
        return true;
    }));
    s.stop();
    s.work_finished();
    threads.join();
    std::size_t on_target = 0;
    for (std::size_t i = 0; i < ops.size(); ++i) on_target += ops[i].ring == static_cast<int>(i % 3) ? 1 : 0;
    CHECK(on_target == ops.size());
}
