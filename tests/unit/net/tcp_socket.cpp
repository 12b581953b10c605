#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/deadline.hpp>
#include <portico/frame_cache.hpp>
#include <portico/stop_token.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/allocation_count.hpp"
#include "support/heap_counter.hpp"
#include "support/loopback.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <chrono>
#include <cstddef>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using portico::buffer;
using portico::errc;
using portico::io_context;
using portico::io_result;
using portico::task;
using portico::tcp_socket;
using portico::test::connected_pair;

PORTICO_IO_TEST_CASE("connected sockets exchange data and agree on endpoints", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    CHECK(client.is_open());
    CHECK(client.local_endpoint().value() == server.remote_endpoint().value());
    CHECK(client.remote_endpoint().value() == server.local_endpoint().value());
    CHECK(client.remote_endpoint().value().addr().is_loopback());

    std::vector<char> sent(100'000);
    std::iota(sent.begin(), sent.end(), 'a');
    std::vector<char> got(sent.size());
    auto [writes, reads] = co_await portico::when_all(client.write_all(buffer(sent)), server.read_all(buffer(got)));
    CHECK_FALSE(writes.error());
    CHECK(writes.value_unchecked() == sent.size());
    CHECK_FALSE(reads.error());
    CHECK(reads.value_unchecked() == sent.size());
    CHECK(got == sent);
}

PORTICO_IO_TEST_CASE("socket options are set and read back", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    CHECK_FALSE(client.set_no_delay(true).error());
    CHECK(client.no_delay().value());
    CHECK_FALSE(client.set_keep_alive(true).error());
    CHECK(client.keep_alive().value());
    CHECK_FALSE(server.set_receive_buffer_size(32 * 1024).error());
    CHECK(server.receive_buffer_size().value() >= 32 * 1024);
    CHECK_FALSE(server.set_send_buffer_size(16 * 1024).error());
    CHECK(server.send_buffer_size().value() >= 16 * 1024);
    CHECK_FALSE(client.set_linger(true, 0).error());

    tcp_socket closed(ctx);
    CHECK(closed.set_no_delay(true).error() == errc::bad_state);
    CHECK(closed.local_endpoint().error() == errc::bad_state);
}

PORTICO_IO_TEST_CASE("zero-length reads and writes complete at once and are not eof", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    const auto before = ctx.statistics();
    char nothing[1];
    auto [ec, n] = co_await server.read_some(buffer(nothing, 0));
    CHECK_FALSE(ec);
    CHECK(n == 0);
    auto [ec2, n2] = co_await client.write_some(buffer(static_cast<const void*>(nothing), 0));
    CHECK_FALSE(ec2);
    CHECK(n2 == 0);
    const auto after = ctx.statistics();
    CHECK(after.recv_calls == before.recv_calls); // no system call at all
    CHECK(after.send_calls == before.send_calls);
}

PORTICO_IO_TEST_CASE("wait_readable waits for bytes without a buffer and consumes none", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    // Nothing sent: it waits (the deadline cancels it).
    auto [quiet] = co_await portico::with_timeout(ctx, 50ms, server.wait_readable());
    CHECK(quiet == errc::timed_out);

    // Bytes arrive while it waits: it completes, and they are all still there.
    const std::string sent = "ready";
    auto [waited, written] = co_await portico::when_all(server.wait_readable(), client.write_all(buffer(sent)));
    CHECK_FALSE(waited.error());
    CHECK_FALSE(written.error());
    std::string got(sent.size(), '\0');
    auto [read_ec, n] = co_await server.read_all(buffer(got));
    CHECK_FALSE(read_ec);
    CHECK(got == sent);

    // Bytes already there: it completes at once, again consuming none.
    auto [write_ec, w] = co_await client.write_all(buffer(sent));
    REQUIRE_FALSE(write_ec);
    auto [again] = co_await server.wait_readable();
    CHECK_FALSE(again);
    auto [read_again, n2] = co_await server.read_all(buffer(got));
    CHECK_FALSE(read_again);
    CHECK(got == sent);

    // The peer's end of stream makes it complete too; the read says eof.
    CHECK_FALSE(client.shutdown_send().error());
    auto [at_end] = co_await server.wait_readable();
    CHECK_FALSE(at_end);
    char byte = 0;
    auto [eof_ec, none] = co_await server.read_some(buffer(&byte, 1));
    CHECK(eof_ec == errc::eof);
}

PORTICO_IO_TEST_CASE("peer close gives eof", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    CHECK_FALSE(client.shutdown_send().error());
    char byte;
    auto [ec, n] = co_await server.read_some(buffer(&byte, 1));
    CHECK(ec == errc::eof);
    CHECK(n == 0);
    // A second read after eof reports eof again, not an error.
    auto [ec2, n2] = co_await server.read_some(buffer(&byte, 1));
    CHECK(ec2 == errc::eof);
}

PORTICO_IO_TEST_CASE("close and cancel while a read is pending resume it once with operation_aborted", "[tcp_socket]")
{
    for (bool use_close : {true, false}) {
        auto [client, server] = co_await connected_pair(ctx);
        int resumed = 0;
        auto reader = [](tcp_socket& s, int& count) -> task<io_result<std::size_t>> {
            char byte;
            auto result = co_await s.read_some(buffer(&byte, 1));
            ++count;
            co_return result;
        };
        auto closer = [](io_context& c, tcp_socket& s, bool close, std::uint64_t calls_before) -> task<> {
            // when_all runs the reader until it suspends, so its WSARecv is
            // already pending here: no sleep, no race.
            CHECK(c.statistics().recv_calls == calls_before + 1);
            if (close) {
                s.close();
            } else {
                s.cancel();
            }
            co_return;
        };
        const auto calls_before = ctx.statistics().recv_calls;
        auto [result, ignored] =
            co_await portico::when_all(reader(server, resumed), closer(ctx, server, use_close, calls_before));
        (void)ignored;
        CHECK(resumed == 1);
        CHECK(result.error() == errc::operation_aborted);
    }
}

PORTICO_IO_TEST_CASE("a stop request cancels a pending read", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    auto reader = [](tcp_socket& s) -> task<io_result<std::size_t>> {
        char byte;
        co_return co_await s.read_some(buffer(&byte, 1));
    };
    auto [ec, n] = co_await portico::with_timeout(ctx, 20ms, reader(server));
    CHECK(ec == errc::timed_out);
    // The socket still works afterwards.
    const char ping = 'p';
    auto [ping_ec, ping_n] = co_await client.write_some(buffer(&ping, 1));
    CHECK_FALSE(ping_ec);
    CHECK(ping_n == 1);
    char byte = 0;
    auto [ec2, n2] = co_await server.read_some(buffer(&byte, 1));
    CHECK_FALSE(ec2);
    CHECK(byte == 'p');
}

PORTICO_IO_TEST_CASE("connect to a closed port fails with connection_refused", "[tcp_socket]")
{
    portico::endpoint target;
    {
        portico::test::raw_listener listener; // take a free port, then free it
        target = listener.local();
    }
    tcp_socket s(ctx);
    auto [ec] = co_await s.connect(target);
    CHECK(ec == errc::connection_refused);
    CHECK(ec == std::errc::connection_refused);
}

PORTICO_IO_TEST_CASE("scatter read into 3 buffers and gather write from 64 buffers are exact", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    std::array<std::array<char, 16>, 64> pieces;
    std::vector<portico::const_buffer> gather;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        pieces[i].fill(static_cast<char>('A' + i % 26));
        gather.push_back(buffer(static_cast<const void*>(pieces[i].data()), pieces[i].size()));
    }
    auto [wec, wn] = co_await client.write_all(gather);
    CHECK_FALSE(wec);
    CHECK(wn == 64 * 16);

    std::array<char, 100> a{}, b{};
    std::array<char, 824> c{};
    std::array<portico::mutable_buffer, 3> scatter{buffer(a), buffer(b), buffer(c)};
    auto [rec, rn] = co_await server.read_all(scatter);
    CHECK_FALSE(rec);
    REQUIRE(rn == 1024);
    std::string joined = std::string(a.data(), 100) + std::string(b.data(), 100) + std::string(c.data(), 824);
    std::string expected;
    for (auto& p : pieces) expected.append(p.data(), p.size());
    CHECK(joined == expected);
}

PORTICO_IO_TEST_CASE("IPv6 loopback works like IPv4", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx, true);
    CHECK(client.remote_endpoint().value().is_v6());
    const std::string hello = "hello over ::1";
    auto [hello_ec, hello_n] = co_await client.write_all(buffer(hello));
    CHECK_FALSE(hello_ec);
    CHECK(hello_n == hello.size());
    std::string got(hello.size(), '\0');
    auto [ec, n] = co_await server.read_all(buffer(got));
    CHECK_FALSE(ec);
    CHECK(got == hello);
}

PORTICO_IO_TEST_CASE("a steady-state echo loop makes no heap allocation per message", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    constexpr int warm_up = 200;
    constexpr int measured = 2000;

    auto echo = [](tcp_socket& s) -> task<> {
        std::array<char, 256> data;
        for (;;) {
            auto [ec, n] = co_await s.read_some(buffer(data));
            if (ec) co_return;
            auto [write_ec, written] = co_await s.write_all(buffer(data.data(), n));
            if (write_ec) co_return;
        }
    };
    std::optional<std::uint64_t> before;
    std::optional<std::uint64_t> after;
    int failures = 0;
    auto ping = [&](tcp_socket& s) -> task<> {
        std::array<char, 64> out;
        std::array<char, 64> in;
        for (int i = 0; i < warm_up + measured; ++i) {
            if (i == warm_up) before = portico::test::allocations_now();
            out.fill(static_cast<char>(i));
            // The coroutines here (echo's, ping's) live for the whole loop;
            // write_all() and read_all() make no frame unless they come up
            // short, and then one the frame cache recycles.
            auto [write_ec, written] = co_await s.write_all(buffer(out));
            auto [read_ec, got] = co_await s.read_all(buffer(in));
            if (write_ec || read_ec || in != out) ++failures;
        }
        after = portico::test::allocations_now();
        (void)s.shutdown_send();
    };
    co_await portico::when_all(echo(server), ping(client));
    CHECK(failures == 0);
    if (before && after) {
        CHECK(*after - *before <= portico::test::cache_growth_allowance); // over 2,000 messages
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}

namespace {

// Waits, on the context's timers, until the context has started `count`
// receives in all; false after 10 s.
task<bool> receives_started(io_context& ctx, std::uint64_t count)
{
    for (int waited = 0; waited < 10'000; ++waited) {
        if (ctx.statistics().recv_calls >= count) co_return true;
        co_await ctx.sleep_for(1ms);
    }
    co_return false;
}

// Sets the frame cache's limit for one test, and puts it back.
class frame_cache_limit_scope {
public:
    explicit frame_cache_limit_scope(std::size_t bytes) : saved_(portico::frame_cache_limit())
    {
        portico::set_frame_cache_limit(bytes);
    }
    frame_cache_limit_scope(const frame_cache_limit_scope&) = delete;
    frame_cache_limit_scope& operator=(const frame_cache_limit_scope&) = delete;
    ~frame_cache_limit_scope() { portico::set_frame_cache_limit(saved_); }

private:
    std::size_t saved_;
};

} // namespace

PORTICO_IO_TEST_CASE("read_all and write_all that one call completes make no coroutine frame", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    // With no frame cache every coroutine frame comes from the heap, so a
    // coroutine behind either would be counted.
    frame_cache_limit_scope no_cache(0);
    std::array<char, 64> out{};
    std::array<char, 64> in{};
    int failures = 0;
    const auto before = portico::test::allocations_now();
    for (int i = 0; i < 100; ++i) {
        out.fill(static_cast<char>(i));
        auto [write_ec, written] = co_await client.write_all(buffer(out));
        auto [read_ec, got] = co_await server.read_all(buffer(in));
        if (write_ec || read_ec || written != out.size() || got != in.size() || in != out) ++failures;
    }
    const auto after = portico::test::allocations_now();
    CHECK(failures == 0);
    if (before && after) {
        CHECK(*after - *before == 0);
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}

PORTICO_IO_TEST_CASE("a read_all that one receive does not fill goes on with the rest", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    std::array<char, 100> sent;
    std::iota(sent.begin(), sent.end(), 'a');
    std::array<char, 100> got{};
    const auto receives = ctx.statistics().recv_calls;
    auto reader = [&]() -> task<io_result<std::size_t>> { co_return co_await server.read_all(buffer(got)); };
    auto writer = [&]() -> task<bool> {
        (void)co_await client.write_all(buffer(sent.data(), 40));
        // The rest only once a second receive is underway: the first one
        // found 40 bytes and came up short.
        const bool second = co_await receives_started(ctx, receives + 2);
        (void)co_await client.write_all(buffer(sent.data() + 40, 60));
        co_return second;
    };
    auto [read, second] = co_await portico::when_all(reader(), writer());
    CHECK(second);
    CHECK_FALSE(read.error());
    CHECK(read.value_unchecked() == sent.size());
    CHECK(got == sent);
}

PORTICO_IO_TEST_CASE("a stop while read_all goes on with the rest ends it with operation_aborted and the bytes so far",
                     "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    std::array<char, 40> sent{};
    std::array<char, 100> got{};
    portico::stop_source stop;
    std::atomic<bool> finished{false};
    const auto receives = ctx.statistics().recv_calls;
    auto reader = [&]() -> task<io_result<std::size_t>> {
        auto result = co_await server.read_all(buffer(got));
        finished = true;
        co_return result;
    };
    auto controller = [&]() -> task<bool> {
        (void)co_await client.write_all(buffer(sent));
        const bool second = co_await receives_started(ctx, receives + 2);
        stop.request_stop();
        // A stop the rest did not see would leave it waiting: end it with
        // the peer's eof instead, which the check below tells apart.
        for (int waited = 0; waited < 5'000 && !finished; ++waited) co_await ctx.sleep_for(1ms);
        if (!finished) (void)client.shutdown_send();
        co_return second;
    };
    task<io_result<std::size_t>> read = reader();
    read.set_stop_token(stop.get_token());
    auto [result, second] = co_await portico::when_all(std::move(read), controller());
    CHECK(second);
    CHECK(result.error() == errc::operation_aborted);
    CHECK(result.value_unchecked() == sent.size());
}

PORTICO_IO_TEST_CASE("destroying a frame while read_all goes on with the rest: no resume, no leak", "[tcp_socket]")
{
    // With one pool thread, the receive counted by the statistics is the
    // rest's, and the coroutine that started it has suspended by the time
    // this one runs again: nothing resumes the frame while it is destroyed.
    if (threads != 1) co_return;
    auto owner = [](tcp_socket s, std::atomic<int>& resumed) -> task<> {
        std::array<char, 100> data;
        (void)co_await s.read_all(buffer(data));
        ++resumed;
    };
    std::atomic<int> resumed{0};
    for (int round = 0; round < 20; ++round) {
        auto [client, server] = co_await connected_pair(ctx);
        std::array<char, 40> part{};
        (void)co_await client.write_all(buffer(part));
        const auto receives = ctx.statistics().recv_calls;
        task<> t = owner(std::move(server), resumed);
        t.handle().resume();
        const bool second = co_await receives_started(ctx, receives + 2);
        CHECK(second);
        // The rest's receive is orphaned and the socket closed; the
        // baseline check of every test sees the frames freed.
        t = {};
        char byte;
        auto [ec, n] = co_await client.read_some(buffer(&byte, 1));
        CHECK(ec == errc::eof);
    }
    CHECK(resumed == 0);
}

PORTICO_IO_TEST_CASE("a read_all with no memory for the rest ends with no_resources and the bytes so far",
                     "[tcp_socket]")
{
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    auto [client, server] = co_await connected_pair(ctx);
    std::array<char, 40> sent{};
    std::array<char, 100> got{};
    (void)co_await client.write_all(buffer(sent));
    // No cached frame either: the rest's frame must come from the heap.
    frame_cache_limit_scope no_cache(0);
    // NOTE: nothing else allocates between here and the completion (the
    // pool's other threads are idle), so the refusal falls on that frame.
    portico::test::fail_next_allocations(1);
    auto [ec, n] = co_await server.read_all(buffer(got));
    const unsigned left = portico::test::allocation_failures_left();
    portico::test::fail_next_allocations(0);
    CHECK(left == 0);
    CHECK(ec == errc::no_resources);
    CHECK(n == sent.size());
    // The connection still works: the bytes sent next arrive.
    (void)co_await client.write_all(buffer(sent));
    auto [again_ec, again] = co_await server.read_all(buffer(got.data(), sent.size()));
    CHECK_FALSE(again_ec);
    CHECK(again == sent.size());
#else
    WARN("allocations are not counted in this build (TSan)");
    co_return;
#endif
}

PORTICO_IO_TEST_CASE("operations are plain awaitables: when_all and with_timeout take them directly", "[tcp_socket]")
{
    auto [client, server] = co_await connected_pair(ctx);
    char got = 0;
    const char sent = 'k';
    auto [read, written] =
        co_await portico::when_all(server.read_some(buffer(&got, 1)), client.write_some(buffer(&sent, 1)));
    CHECK_FALSE(read.error());
    CHECK_FALSE(written.error());
    CHECK(got == sent);

    // Nothing arrives: the deadline cancels the read itself.
    auto [ec, n] = co_await portico::with_timeout(ctx, 20ms, server.read_some(buffer(&got, 1)));
    CHECK(ec == errc::timed_out);
    CHECK(n == 0);

    portico::test::raw_listener listener;
    tcp_socket third(ctx);
    auto [connect_ec] = co_await portico::with_timeout(ctx, 10s, third.connect(listener.local()));
    CHECK_FALSE(connect_ec);
}

#if PORTICO_BACKEND_IOCP
// The inline path: a call that succeeds at once resumes its coroutine on the
// spot, within a budget, and the port is looked at every few turns. The
// io_uring backend has no inline path yet (docs/design/uring.md): every
// completion comes through the ring, so these counters stay 0 there.
namespace {

// What a reader whose bytes all wait in its socket saw while it read them one
// at a time, on the only pool thread, with a task queued just before.
struct ready_reads {
    unsigned reads = 0;               // one-byte reads in the loop
    unsigned done_when_other_ran = 0; // reads completed when the queued task ran
    std::uint64_t inline_completions = 0;
    std::uint64_t ready_queued = 0;
    std::uint64_t posts = 0;
};

ready_reads read_ready_bytes(unsigned budget, unsigned reads, unsigned port_check_interval = 1)
{
    ready_reads result{.reads = reads, .done_when_other_ran = reads + 1};
    io_context::options options;
    options.inline_budget = budget;
    options.port_check_interval = port_check_interval;
    portico::test::run_co_test(
        1,
        [&result](io_context& c, unsigned) -> task<> {
            auto [client, server] = co_await connected_pair(c);
            // One write of a few bytes travels as one segment: once its
            // first byte can be read, so can all the others.
            const std::vector<char> sent(result.reads + 1, 'r');
            auto [write_ec, written] = co_await client.write_all(buffer(sent));
            REQUIRE_FALSE(write_ec);
            char got = 0;
            auto [first_ec, first] = co_await server.read_all(buffer(&got, 1));
            REQUIRE_FALSE(first_ec);

            // NOTE: the queued task runs before the loop ends (the first read
            // past the budget waits behind it), so `done` outlives it.
            std::atomic<unsigned> done{0};
            c.post([&result, &done] { result.done_when_other_ran = done.load(); });
            const auto stats_before = c.statistics();
            for (unsigned i = 0; i < result.reads; ++i) {
                auto [ec, n] = co_await server.read_some(buffer(&got, 1));
                REQUIRE_FALSE(ec);
                REQUIRE(n == 1);
                done.fetch_add(1);
            }
            const auto stats_after = c.statistics();
            result.inline_completions = stats_after.inline_completions - stats_before.inline_completions;
            result.ready_queued = stats_after.ready_queued - stats_before.ready_queued;
            result.posts = stats_after.posts - stats_before.posts;
        },
        options);
    return result;
}

} // namespace

TEST_CASE("a connection whose data is always ready lets a queued task run after one turn", "[tcp_socket]")
{
    // Every read succeeds at once: `budget` of them resume inline, the next
    // waits in the thread's ready queue, behind the task the port holds.
    for (const unsigned budget : {1u, 4u, 16u}) {
        DYNAMIC_SECTION("budget " << budget)
        {
            const ready_reads r = read_ready_bytes(budget, 200);
            INFO("other task ran after " << r.done_when_other_ran << " reads; " << r.inline_completions
                                         << " inline completions, " << r.ready_queued << " ready-queued, " << r.posts
                                         << " posts");
            // (The reads before the loop may have used part of its turn.)
            CHECK(r.done_when_other_ran <= budget);
            // Turns of one queued completion and `budget` inline ones.
            const std::uint64_t turns = r.reads / (budget + 1);
            CHECK(r.inline_completions >= turns * budget);
            CHECK(r.inline_completions <= turns * budget + budget);
            CHECK(r.ready_queued >= turns);
            CHECK(r.inline_completions + r.ready_queued == r.reads);
            // The queue is the thread's own: no system call hands them on.
            CHECK(r.posts == 0);
        }
    }
}

TEST_CASE("a thread that found the port empty looks again within port_check_interval turns", "[tcp_socket]")
{
    // The reader is alone when its first read is queued: the port is found
    // empty, and the thread serves up to `interval` ready operations (turns
    // of the reader) before it looks again.
    for (const unsigned interval : {4u, 16u}) {
        DYNAMIC_SECTION("interval " << interval)
        {
            constexpr unsigned budget = 1;
            const ready_reads r = read_ready_bytes(budget, 200, interval);
            INFO("other task ran after " << r.done_when_other_ran << " reads, " << r.ready_queued << " ready-queued");
            CHECK(r.done_when_other_ran <= (interval + 1) * (budget + 1));
            CHECK(r.posts == 0);
        }
    }
}

TEST_CASE("an inline budget of 0 resumes no socket call inline", "[tcp_socket]")
{
    const ready_reads r = read_ready_bytes(0, 50);
    CHECK(r.inline_completions == 0);
    CHECK(r.ready_queued == r.reads); // each immediate success waited its turn
    CHECK(r.posts == 0);
    CHECK(r.done_when_other_ran == 0);
}
#endif

namespace {

// Reads `count` bytes that wait in `s` one at a time and logs `who` for each.
task<> log_reads(tcp_socket& s, unsigned count, char who, std::string& log)
{
    char got = 0;
    for (unsigned i = 0; i < count; ++i) {
        auto [ec, n] = co_await s.read_some(buffer(&got, 1));
        REQUIRE_FALSE(ec);
        REQUIRE(n == 1);
        log += who;
    }
}

// The longest run of one letter in `log`.
std::size_t longest_run(const std::string& log)
{
    std::size_t longest = 0;
    std::size_t run = 0;
    for (std::size_t i = 0; i < log.size(); ++i) {
        run = i > 0 && log[i] == log[i - 1] ? run + 1 : 1;
        longest = (std::max)(longest, run);
    }
    return longest;
}

} // namespace

TEST_CASE("two connections with data waiting are served in turns, not in runs", "[tcp_socket]")
{
    // One pool thread, two connections whose bytes all wait in their sockets:
    // every read succeeds at once. Each turn is one read that waited plus
    // `budget` inline ones; then the other connection's turn comes.
    for (const unsigned budget : {0u, 1u, 4u}) {
        DYNAMIC_SECTION("budget " << budget)
        {
            constexpr unsigned reads = 100;
            std::string log;
            io_context::options options;
            options.inline_budget = budget;
            portico::test::run_co_test(
                1,
                [&log](io_context& c, unsigned) -> task<> {
                    auto [client_a, server_a] = co_await connected_pair(c);
                    auto [client_b, server_b] = co_await connected_pair(c);
                    const std::vector<char> sent(reads + 1, 'r');
                    char got = 0;
                    for (auto* pair : {&client_a, &client_b}) {
                        auto [write_ec, written] = co_await pair->write_all(buffer(sent));
                        REQUIRE_FALSE(write_ec);
                    }
                    for (auto* server : {&server_a, &server_b}) {
                        auto [first_ec, first] = co_await server->read_all(buffer(&got, 1));
                        REQUIRE_FALSE(first_ec);
                    }
                    co_await portico::when_all(log_reads(server_a, reads, 'a', log),
                                               log_reads(server_b, reads, 'b', log));
                },
                options);
            INFO(log);
            REQUIRE(log.size() == 2 * reads);
            // Until one of them has read everything, neither runs ahead by
            // more than its turn. (Started by when_all within one turn, the
            // two share their first: it may give one of them more.)
            const std::size_t second_turn = log.find_first_not_of(log[0]);
            const std::size_t both = (std::min)(log.find_last_of('a'), log.find_last_of('b'));
            REQUIRE(second_turn < both);
            CHECK(second_turn <= 2 * (budget + 1));
            CHECK(longest_run(log.substr(second_turn, both + 1 - second_turn)) <= budget + 1);
            if (budget == 0)
                CHECK(log.substr(0, 2 * reads) == [] {
                    std::string alternating;
                    for (unsigned i = 0; i < reads; ++i) alternating += "ab";
                    return alternating;
                }());
        }
    }
}
