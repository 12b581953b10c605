// packet_stream's heartbeat over the mock stream, on the manual clock
// (issue 14): zombies are dropped with heartbeat_timeout, talkers are never
// pinged, answering peers stay, two heartbeats against each other settle on
// one pinger, the heartbeat beside idle_timeout, order with queued writes,
// pong_only, pings left to the caller, and the hostile inputs (pongs nobody
// asked for, ping floods, bodies). Over real sockets, with 1 and 4 threads:
// unit/net/heartbeat_tcp.cpp.
#include <portico/framing/packet_stream.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task_group.hpp>

#include "support/allocation_count.hpp"
#include "support/catch.hpp"
#include "support/framing.hpp"
#include "support/manual_clock.hpp"
#include "support/mock_stream.hpp"
#include "support/written_packets.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using portico::errc;
using portico::packet_format;
using portico::packet_stream;
using portico::packet_stream_options;
using portico::proof_of_life;
using portico::sync_wait;
using portico::task;
using portico::task_group;
using portico::test::allocations_now;
using portico::test::manual_clock;
using portico::test::mock_stream;

namespace {

constexpr std::uint32_t chat = 1, ping = 90, pong = 91;

packet_stream_options with_heartbeat(proof_of_life proof = proof_of_life::any_packet, bool answer = true)
{
    return {.heartbeat = {.interval = 1s,
                          .timeout = 3s,
                          .ping_type = ping,
                          .pong_type = pong,
                          .answer_pings = answer,
                          .proof = proof}};
}

std::vector<std::byte> encode(std::uint32_t type, std::size_t body = 0)
{
    std::vector<std::byte> out(4 + body, std::byte{0x61});
    REQUIRE_FALSE(portico::encode_header(packet_format{}, type, body, out).error());
    return out;
}

std::vector<std::byte> repeated(std::uint32_t type, std::size_t count)
{
    std::vector<std::byte> out;
    for (std::size_t i = 0; i < count; ++i) {
        const auto p = encode(type);
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

std::vector<portico::test::decoded_packet> written(const mock_stream& s)
{
    return portico::test::decode_all(packet_format{}, s.written());
}

std::size_t count(const mock_stream& s, std::uint32_t type)
{
    std::size_t n = 0;
    for (const auto& p : written(s)) n += p.type == type;
    return n;
}

/// What read_packet() returned: the types of the packets, then the error.
struct reading {
    std::vector<std::uint32_t> types;
    std::optional<std::error_code> end;
    std::optional<manual_clock::time_point> ended_at;
};

task<> read_all(packet_stream<mock_stream>& ps, reading& r)
{
    for (;;) {
        auto [ec, p] = co_await ps.read_packet();
        if (ec) {
            r.end = ec;
            r.ended_at = manual_clock::now();
            co_return;
        }
        r.types.push_back(p.type);
    }
}

mock_stream held_reads()
{
    mock_stream s;
    s.hold_reads();
    return s;
}

/// One stream under test: a mock stream whose reads wait for the test's
/// pushes, a packet_stream on it, and what its reader saw.
struct session {
    mock_stream stream = held_reads();
    packet_stream<mock_stream> ps;
    reading r;
    manual_clock::time_point start = manual_clock::now();

    explicit session(const packet_stream_options& options) : ps(stream, options) {}

    portico::test::manual_timers& timers() { return stream.context(); }

    /// Runs `script` (a plain callable, or one returning a task) while
    /// read_all() reads; then closes the stream (a no-op once a limit closed
    /// it: the first reason stays, and a test waiting for one that never
    /// comes fails rather than hangs) and runs the deferred flushes.
    template <class Script>
    void run(Script script)
    {
        sync_wait([&]() -> task<> {
            task_group group;
            group.spawn(read_all(ps, r));
            if constexpr (std::is_void_v<std::invoke_result_t<Script&>>) {
                script();
            } else {
                co_await script();
            }
            ps.close();
            co_await group.join();
        }());
        timers().run_deferred();
    }

    /// How long after the start the reader ended.
    [[nodiscard]] manual_clock::duration lasted() const
    {
        REQUIRE(r.ended_at.has_value());
        return *r.ended_at - start;
    }

    /// A peer that answers pings: a pong for each ping written since the
    /// last call.
    void answer_pings()
    {
        const auto packets = written(stream);
        for (; answered_ < packets.size(); ++answered_) {
            if (packets[answered_].type == ping) stream.push(encode(pong));
        }
    }

private:
    std::size_t answered_ = 0;
};

} // namespace

TEST_CASE("heartbeat: a peer that stops answering but keeps its connection open is dropped with heartbeat_timeout "
          "within the timeout plus one interval",
          "[packet_stream_heartbeat]")
{
    session s(with_heartbeat());
    std::optional<std::error_code> said;
    s.run([&]() -> task<> {
        s.stream.push(encode(chat, 5)); // its last word; then it stays silent
        s.timers().advance_by_steps(5s, 100ms);
        REQUIRE(s.r.end.has_value());
        // The limit keeps the write side for a last word, as the others do.
        auto [notice_ec, notice] =
            portico::shared_packet::make(packet_format{}, 99, std::string_view("are you there?"));
        REQUIRE_FALSE(notice_ec);
        auto [ec] = co_await s.ps.close_with(notice, 1s);
        said = ec;
    });
    CHECK(s.r.types == std::vector<std::uint32_t>{chat});
    CHECK(*s.r.end == errc::heartbeat_timeout);
    CHECK(*s.r.end == std::errc::timed_out);
    CHECK(s.ps.close_reason() == errc::heartbeat_timeout);
    CHECK(s.lasted() >= 3s);
    CHECK(s.lasted() <= 4s);
    // Asked once per silent interval until then: at 1 s and at 2 s.
    CHECK(count(s.stream, ping) == 2);
    REQUIRE(said.has_value());
    CHECK_FALSE(*said);
    CHECK(written(s.stream).back().type == 99);
    CHECK(s.timers().pending() == 0); // the watchdog ended with the stream
}

TEST_CASE("heartbeat: a peer that keeps sending is never pinged, even by a stream that sends nothing",
          "[packet_stream_heartbeat]")
{
    session s(with_heartbeat());
    s.run([&] {
        for (int i = 0; i < 40; ++i) {
            s.stream.push(encode(chat, 3));
            s.timers().advance_by_steps(900ms, 100ms); // under the interval apart
        }
        CHECK_FALSE(s.r.end.has_value());
    });
    CHECK(s.r.types.size() == 40);
    CHECK(count(s.stream, ping) == 0);
    CHECK(s.stream.writes() == 0);
}

TEST_CASE("heartbeat: a peer that only answers pings stays, and read_packet never returns a pong",
          "[packet_stream_heartbeat]")
{
    session s(with_heartbeat());
    s.run([&] {
        for (int step = 0; step < 300; ++step) { // 30 s
            s.timers().advance(100ms);
            s.answer_pings();
        }
        CHECK_FALSE(s.r.end.has_value());
    });
    CHECK(s.r.types.empty());
    CHECK(*s.r.end == errc::operation_aborted);
    // Asked about once per interval (each pong restarts the interval).
    CHECK(count(s.stream, ping) >= 28);
    CHECK(count(s.stream, ping) <= 30);
}

namespace {

/// Two mock streams joined back to back: what one side writes, the other
/// reads (moved across by pump()).
struct pipe_pair {
    mock_stream a = held_reads(), b = held_reads();
    std::size_t a_moved = 0, b_moved = 0;

    /// Moves everything written so far across, until nothing more comes
    /// (a pong written in answer is moved too), running deferred flushes.
    void pump()
    {
        for (bool moved = true; moved;) {
            // Both ways every round (no short-circuit).
            const bool a_to_b = move(a, a_moved, b);
            const bool b_to_a = move(b, b_moved, a);
            moved = a_to_b || b_to_a;
            moved |= (a.context().run_deferred() + b.context().run_deferred()) != 0;
        }
    }

private:
    static bool move(mock_stream& from, std::size_t& done, mock_stream& to)
    {
        const auto bytes = from.written();
        if (bytes.size() == done) return false;
        to.push(std::span(bytes).subspan(done));
        done = bytes.size();
        return true;
    }
};

/// What two streams heartbeating each other over a pipe_pair did in 60 s.
struct both_sides {
    std::size_t a_pings = 0, b_pings = 0, b_pongs = 0;
    bool up = false;
};

both_sides run_both_sides(std::chrono::milliseconds b_later)
{
    pipe_pair pipe;
    auto& timers = pipe.a.context(); // the manual clock is one for all
    packet_stream<mock_stream> a(pipe.a, with_heartbeat());
    packet_stream<mock_stream> b(pipe.b, with_heartbeat());
    reading ra, rb;
    both_sides out;
    sync_wait([&]() -> task<> {
        task_group group;
        group.spawn(read_all(a, ra));
        timers.advance(b_later);
        group.spawn(read_all(b, rb));
        for (int step = 0; step < 600; ++step) { // 60 s
            pipe.a.context().advance(100ms);
            pipe.b.context().advance(0ms);
            pipe.pump();
        }
        out.up = !ra.end && !rb.end;
        a.close();
        b.close();
        co_await group.join();
    }());
    CHECK(ra.types.empty());
    CHECK(rb.types.empty());
    out.a_pings = count(pipe.a, ping);
    out.b_pings = count(pipe.b, ping);
    out.b_pongs = count(pipe.b, pong);
    pipe.a.context().run_deferred();
    pipe.b.context().run_deferred();
    return out;
}

} // namespace

TEST_CASE("heartbeat on both sides: both stay up, and once one side pings the other only answers",
          "[packet_stream_heartbeat]")
{
    SECTION("b starts half an interval after a")
    {
        const both_sides r = run_both_sides(500ms);
        CHECK(r.up);
        // a asks once per interval; b hears it before its own ping is due,
        // and a ping heard holds its own off: b answers and never asks.
        CHECK(r.a_pings >= 58);
        CHECK(r.a_pings <= 60);
        CHECK(r.b_pings == 0);
        CHECK(r.b_pongs == r.a_pings);
    }
    SECTION("both start at the same instant, with no jitter at all: in step, each pings every 1.5 intervals")
    {
        const both_sides r = run_both_sides(0ms);
        CHECK(r.up);
        CHECK(r.a_pings == 40); // at 1 s, 2.5 s, ... 59.5 s
        CHECK(r.b_pings == 40);
    }
}

TEST_CASE("heartbeat with idle_timeout: pongs are no activity, silence is still the heartbeat's, talkers stay",
          "[packet_stream_heartbeat]")
{
    auto options = with_heartbeat();
    options.idle_timeout = 5s;
    SECTION("a peer that only answers pings is alive but idle: idle_timeout at 5 s")
    {
        session s(options);
        s.run([&] {
            for (int step = 0; step < 100 && !s.r.end; ++step) {
                s.timers().advance(100ms);
                s.answer_pings();
            }
        });
        CHECK(*s.r.end == errc::idle_timeout);
        CHECK(s.lasted() == 5s);
        CHECK(count(s.stream, ping) >= 4); // it answered every one
    }
    SECTION("a peer that went silent: heartbeat_timeout at 3 s, before the idle timeout")
    {
        session s(options);
        s.run([&] { s.timers().advance_by_steps(6s, 100ms); });
        CHECK(*s.r.end == errc::heartbeat_timeout);
        CHECK(s.lasted() == 3s);
    }
    SECTION("a peer that talks every 2 s and answers pings: neither trips in 30 s")
    {
        session s(options);
        s.run([&] {
            for (int step = 1; step <= 300; ++step) {
                s.timers().advance(100ms);
                s.answer_pings();
                if (step % 20 == 0) s.stream.push(encode(chat, 1));
            }
            CHECK_FALSE(s.r.end.has_value());
        });
        CHECK(s.r.types.size() == 15);
    }
}

TEST_CASE("heartbeat: a ping from the peer while writes are queued is answered after them; our own ping too",
          "[packet_stream_heartbeat]")
{
    session s(with_heartbeat());
    s.stream.hold_writes();
    s.stream.write_limit(1000); // the first packet takes three writes
    const std::string big(2500, 'b');
    std::optional<std::error_code> big_ec;
    s.run([&]() -> task<> {
        task_group writer;
        writer.spawn(
            [](packet_stream<mock_stream>& ps, const std::string& body, std::optional<std::error_code>& out) -> task<> {
                auto [ec] = co_await ps.write_packet(chat, body);
                out = ec;
            }(s.ps, big, big_ec));
        REQUIRE(s.stream.write_held());
        REQUIRE_FALSE(s.ps.queue_packet(2, std::string_view("queued copy")));
        s.stream.push(encode(ping));                // answered behind what is queued
        s.timers().advance_by_steps(1500ms, 100ms); // our own ping falls due meanwhile
        s.stream.release_writes();
        co_await writer.join();
    });
    REQUIRE(big_ec.has_value());
    CHECK_FALSE(*big_ec);
    const auto packets = written(s.stream);
    REQUIRE(packets.size() == 4);
    CHECK(packets[0].type == chat);
    CHECK(packets[0].body.size() == 2500);
    CHECK(packets[1].type == 2);
    CHECK(packets[2].type == pong);
    CHECK(packets[3].type == ping);
    CHECK(s.r.types.empty());
}

TEST_CASE("heartbeat pong_only: other packets are no answer, a ping goes out every interval, pongs keep it up",
          "[packet_stream_heartbeat]")
{
    SECTION("chat flows every 200 ms but no pong comes: heartbeat_timeout at 3 s")
    {
        session s(with_heartbeat(proof_of_life::pong_only));
        s.run([&] {
            for (int step = 0; step < 50 && !s.r.end; ++step) {
                s.stream.push(encode(chat, 2));
                s.timers().advance(200ms);
            }
        });
        CHECK(*s.r.end == errc::heartbeat_timeout);
        CHECK(s.lasted() <= 4s);
        CHECK(s.lasted() >= 3s);
        CHECK(s.r.types.size() >= 14);
        CHECK(count(s.stream, ping) == 2); // every interval although packets flowed
    }
    SECTION("chat flows and every ping is answered: up for 30 s")
    {
        session s(with_heartbeat(proof_of_life::pong_only));
        s.run([&] {
            for (int step = 0; step < 150; ++step) {
                s.stream.push(encode(chat, 2));
                s.timers().advance(200ms);
                s.answer_pings();
            }
            CHECK_FALSE(s.r.end.has_value());
        });
        CHECK(s.r.types.size() == 150);
        CHECK(count(s.stream, ping) == 30);
    }
}

TEST_CASE("heartbeat with answer_pings off: read_packet returns pings for the caller to answer",
          "[packet_stream_heartbeat]")
{
    session s(with_heartbeat(proof_of_life::any_packet, false));
    s.run([&] {
        s.stream.push(encode(ping));
        s.stream.push(encode(pong)); // pongs are still the stream's
        s.stream.push(encode(ping, 8));
    });
    CHECK(s.r.types == std::vector<std::uint32_t>{ping, ping});
    CHECK(count(s.stream, pong) == 0);
}

TEST_CASE("heartbeat, hostile input: a pong nobody asked for is consumed; with pong_only it proves nothing",
          "[packet_stream_heartbeat]")
{
    SECTION("any_packet: taken in, never returned, and (as any packet) a sign of life")
    {
        session s(with_heartbeat());
        s.run([&] {
            for (int i = 0; i < 20; ++i) {
                s.stream.push(encode(pong));
                s.timers().advance_by_steps(500ms, 100ms);
            }
            CHECK_FALSE(s.r.end.has_value());
        });
        CHECK(s.r.types.empty());
        CHECK(count(s.stream, ping) == 0);
    }
    SECTION("pong_only: pongs sent before any ping do not count, the peer is dropped at the timeout")
    {
        session s(with_heartbeat(proof_of_life::pong_only));
        s.run([&] {
            for (int step = 0; step < 9; ++step) { // a pong every 100 ms before the first ping
                s.stream.push(encode(pong));
                s.timers().advance(100ms);
            }
            s.timers().advance_by_steps(4s, 100ms);
        });
        CHECK(*s.r.end == errc::heartbeat_timeout);
        CHECK(s.lasted() == 3s);
        CHECK(s.r.types.empty());
    }
}

TEST_CASE("heartbeat, hostile input: a ping flood gets at most one pong per 100 ms, and trips a rate limit",
          "[packet_stream_heartbeat]")
{
    SECTION("1,000 pings at once, then 10 every 20 ms for 2 s: 1 pong, then one per 100 ms")
    {
        session s(with_heartbeat());
        s.run([&] {
            s.stream.push(repeated(ping, 1000));
            CHECK(count(s.stream, pong) == 1);
            for (int step = 1; step <= 100; ++step) {
                s.timers().advance(20ms);
                s.stream.push(repeated(ping, 10));
            }
            CHECK_FALSE(s.r.end.has_value());
        });
        CHECK(s.r.types.empty());           // not one of the 2,000 pings returned
        CHECK(count(s.stream, pong) == 21); // at 0 s, then every 100 ms to 2 s
        CHECK(count(s.stream, ping) == 0);  // the flood is a sign of life too
    }
    SECTION("with max_packets_per_second, pings count: the flooder is cut off with rate_limited")
    {
        mock_stream stream;
        auto options = with_heartbeat();
        options.max_packets_per_second = 100;
        stream.push(repeated(ping, 1000));
        packet_stream<mock_stream> ps(stream, options);
        reading r;
        sync_wait(read_all(ps, r));
        CHECK(*r.end == errc::rate_limited);
        CHECK(count(stream, pong) <= 1);
        stream.context().run_deferred();
    }
}

TEST_CASE("heartbeat: a peer pinging more often than our own interval has every ping answered",
          "[packet_stream_heartbeat]")
{
    // Ours: 10 s. The peer's (a server that chose 1 s, with a 3 s timeout):
    // it must hear a pong to each ping, whatever we chose.
    auto options = with_heartbeat();
    options.heartbeat.interval = 10s;
    options.heartbeat.timeout = 30s;
    session s(options);
    s.run([&] {
        for (int second = 1; second <= 20; ++second) {
            s.timers().advance_by_steps(1s, 100ms);
            s.stream.push(encode(ping));
        }
        CHECK_FALSE(s.r.end.has_value());
    });
    CHECK(count(s.stream, pong) == 20);
    CHECK(count(s.stream, ping) == 0); // it hears the peer every second
}

TEST_CASE("heartbeat, hostile input: pings and pongs with bodies are taken as without; the answer has no body",
          "[packet_stream_heartbeat]")
{
    SECTION("a ping with a 100-byte body: answered with a header-only pong, not returned")
    {
        session s(with_heartbeat());
        s.run([&] {
            s.stream.push(encode(ping, 100));
            s.stream.push(encode(chat, 1));
        });
        CHECK(s.r.types == std::vector<std::uint32_t>{chat});
        const auto packets = written(s.stream);
        REQUIRE(packets.size() == 1);
        CHECK(packets[0].type == pong);
        CHECK(packets[0].body.empty());
    }
    SECTION("pong_only: a pong with a body answers the ping")
    {
        session s(with_heartbeat(proof_of_life::pong_only));
        s.run([&] {
            for (int step = 1; step <= 100; ++step) { // 10 s
                const std::size_t pings = count(s.stream, ping);
                s.timers().advance(100ms);
                if (count(s.stream, ping) != pings) s.stream.push(encode(pong, 16));
            }
            CHECK_FALSE(s.r.end.has_value());
        });
        CHECK(s.r.types.empty());
        CHECK(count(s.stream, ping) == 10);
    }
}

TEST_CASE("heartbeat: 100 intervals of pings allocate nothing (the ping is the stream's own node, reused)",
          "[packet_stream_heartbeat]")
{
    auto options = with_heartbeat();
    options.heartbeat.timeout = 1000s; // a patient stream: it only asks
    session s(options);
    s.stream.reserve_written(4 * 200);
    std::optional<std::uint64_t> before, after;
    s.run([&] {
        s.timers().advance_by_steps(10s, 1s); // warm up: the timers' and the queue's storage
        before = allocations_now();
        s.timers().advance_by_steps(100s, 1s);
        after = allocations_now();
    });
    CHECK(count(s.stream, ping) == 110);
    CHECK(s.stream.writes() == 110);
    if (before && after) {
        CHECK(*after - *before == 0);
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}
