// packet_stream's read-side limits over the mock stream, on a manual clock:
// the per-packet deadline (slowloris), the idle timeout and the rate limit.
// Over real sockets: unit/net/packet_stream_tcp.cpp.
#include <portico/framing/packet_stream.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task_group.hpp>

#include "support/catch.hpp"
#include "support/mock_stream.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

using namespace std::chrono_literals;
using portico::errc;
using portico::packet_format;
using portico::packet_stream;
using portico::sync_wait;
using portico::task;
using portico::task_group;
using portico::test::manual_clock;
using portico::test::mock_stream;

namespace {

std::vector<std::byte> encode(std::uint32_t type, std::size_t size)
{
    std::vector<std::byte> out(4 + size, std::byte{0x61});
    REQUIRE_FALSE(portico::encode_header(packet_format{}, type, size, out).error());
    return out;
}

/// Reads packets until an error; records how many and the error.
task<> read_all(packet_stream<mock_stream>& ps, std::size_t& packets, std::optional<std::error_code>& end)
{
    for (;;) {
        auto [ec, p] = co_await ps.read_packet();
        if (ec) {
            end = ec;
            co_return;
        }
        ++packets;
    }
}

} // namespace

TEST_CASE("slowloris: one byte every 200 ms cannot stretch a packet past its 2 s deadline", "[packet_stream_limits]")
{
    mock_stream stream;
    stream.hold_reads();
    auto& timers = stream.context();
    packet_stream<mock_stream> ps(stream, {.packet_timeout = 2s});
    const auto packet = encode(1, 100);
    std::size_t packets = 0;
    std::optional<std::error_code> end;
    const auto start = manual_clock::now();
    std::optional<manual_clock::duration> closed_after;
    sync_wait([&]() -> task<> {
        task_group group;
        group.spawn(read_all(ps, packets, end));
        for (std::size_t i = 0; i < packet.size() && !end; ++i) {
            stream.push(std::span(packet).subspan(i, 1));
            timers.advance(200ms);
            if (end && !closed_after) closed_after = manual_clock::now() - start;
        }
        co_await group.join();
    }());
    REQUIRE(end.has_value());
    CHECK(*end == errc::timed_out);
    CHECK(packets == 0);
    REQUIRE(closed_after.has_value());
    CHECK(*closed_after >= 2s);
    CHECK(*closed_after <= 2200ms);
    CHECK(ps.close_reason() == errc::timed_out);
    CHECK(timers.pending() == 0); // the watchdog ended with the stream
}

TEST_CASE("an idle peer that sends nothing is not a slow packet: it stays connected", "[packet_stream_limits]")
{
    mock_stream stream;
    stream.hold_reads();
    auto& timers = stream.context();
    packet_stream<mock_stream> ps(stream, {.packet_timeout = 2s});
    std::size_t packets = 0;
    std::optional<std::error_code> end;
    sync_wait([&]() -> task<> {
        task_group group;
        group.spawn(read_all(ps, packets, end));
        timers.advance_by_steps(30s, 250ms);
        CHECK_FALSE(end.has_value());
        // Whole packets, however far apart, are fine.
        for (std::uint32_t i = 0; i < 5; ++i) {
            stream.push(encode(i, 10));
            timers.advance_by_steps(5s, 250ms);
        }
        CHECK(packets == 5);
        CHECK_FALSE(end.has_value());
        ps.close();
        co_await group.join();
    }());
    CHECK(*end == errc::operation_aborted);
}

TEST_CASE("idle timeout: nothing received for the timeout closes the stream with idle_timeout",
          "[packet_stream_limits]")
{
    mock_stream stream;
    stream.hold_reads();
    auto& timers = stream.context();
    packet_stream<mock_stream> ps(stream, {.idle_timeout = 1s});
    std::size_t packets = 0;
    std::optional<std::error_code> end;
    sync_wait([&]() -> task<> {
        task_group group;
        group.spawn(read_all(ps, packets, end));
        // A packet every 500 ms keeps it alive...
        for (std::uint32_t i = 0; i < 10; ++i) {
            stream.push(encode(i, 3));
            timers.advance_by_steps(500ms, 100ms);
        }
        CHECK(packets == 10);
        CHECK_FALSE(end.has_value());
        // ...one second of silence does not.
        timers.advance_by_steps(1100ms, 100ms);
        CHECK(end.has_value());
        co_await group.join();
    }());
    CHECK(*end == errc::idle_timeout);
    CHECK(timers.pending() == 0);
}

TEST_CASE("rate limit: a burst over the limit is cut off, a steady sender at the limit is not",
          "[packet_stream_limits]")
{
    SECTION("a flood of 200 packets at one instant, limit 100 per second")
    {
        mock_stream stream;
        std::vector<std::byte> flood;
        for (std::uint32_t i = 0; i < 200; ++i) {
            const auto p = encode(i, 0);
            flood.insert(flood.end(), p.begin(), p.end());
        }
        stream.push(flood);
        packet_stream<mock_stream> ps(stream, {.max_packets_per_second = 100});
        std::size_t packets = 0;
        std::optional<std::error_code> end;
        sync_wait(read_all(ps, packets, end));
        CHECK(packets == 100); // the burst allowance
        CHECK(*end == errc::rate_limited);
        CHECK(ps.close_reason() == errc::rate_limited);
    }
    SECTION("10 packets every 100 ms for 5 s, limit 100 per second")
    {
        mock_stream stream;
        stream.hold_reads();
        auto& timers = stream.context();
        packet_stream<mock_stream> ps(stream, {.max_packets_per_second = 100});
        std::size_t packets = 0;
        std::optional<std::error_code> end;
        sync_wait([&]() -> task<> {
            task_group group;
            group.spawn(read_all(ps, packets, end));
            for (int tick = 0; tick < 50; ++tick) {
                for (std::uint32_t i = 0; i < 10; ++i) stream.push(encode(i, 1));
                timers.advance(100ms);
            }
            CHECK_FALSE(end.has_value());
            ps.close();
            co_await group.join();
        }());
        CHECK(packets == 500);
    }
}

namespace {

/// A stream with no clock: timeouts cannot be enforced on it.
struct clockless_stream {
    mock_stream inner;
    auto read_some(std::span<portico::mutable_buffer> buffers) { return inner.read_some(buffers); }
};

} // namespace

TEST_CASE("timeouts on a stream without a clock are refused, not silently ignored", "[packet_stream_limits]")
{
    packet_stream<clockless_stream> ps(clockless_stream{}, {.packet_timeout = 2s});
    auto [ec, p] = sync_wait(ps.read_packet());
    CHECK(ec == errc::invalid_argument);
    packet_stream<clockless_stream> unlimited(clockless_stream{}, {.max_packets_per_second = 10});
    auto [eof, q] = sync_wait(unlimited.read_packet());
    CHECK(eof == errc::eof); // the rate limit needs no timer
}
