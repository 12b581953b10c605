// A last word before a kick (packet_stream::close_with) and the send queue's
// grace above its high watermark, over the mock stream on a manual clock
// (issue 16, item 5).
#include <portico/framing/packet_stream.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task_group.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"
#include "support/mock_stream.hpp"
#include "support/written_packets.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using portico::errc;
using portico::overflow_policy;
using portico::packet_format;
using portico::packet_stream;
using portico::shared_packet;
using portico::sync_wait;
using portico::task;
using portico::task_group;
using portico::test::mock_stream;

namespace {

constexpr std::uint32_t kicked = 99;

std::vector<std::byte> encode(std::uint32_t type, std::size_t size)
{
    std::vector<std::byte> out(4 + size, std::byte{0x61});
    REQUIRE_FALSE(portico::encode_header(packet_format{}, type, size, out).error());
    return out;
}

shared_packet kick_notice(std::string_view why)
{
    auto [ec, p] = shared_packet::make(packet_format{}, kicked, why);
    REQUIRE_FALSE(ec);
    return p;
}

std::vector<portico::test::decoded_packet> decode_all(const std::vector<std::byte>& bytes)
{
    return portico::test::decode_all(packet_format{}, bytes);
}

std::string body_of(const portico::test::decoded_packet& p)
{
    return {reinterpret_cast<const char*>(p.body.data()), p.body.size()};
}

/// Reads until an error and yields it.
task<std::error_code> read_until_error(packet_stream<mock_stream>& ps)
{
    for (;;) {
        auto [ec, p] = co_await ps.read_packet();
        if (ec) co_return ec;
    }
}

} // namespace

TEST_CASE("close_with after a rate limit: the flooder is told why, then closed", "[packet_stream_last_word]")
{
    mock_stream stream;
    std::vector<std::byte> flood;
    for (std::uint32_t i = 0; i < 50; ++i) {
        const auto p = encode(i, 0);
        flood.insert(flood.end(), p.begin(), p.end());
    }
    stream.push(flood);
    packet_stream<mock_stream> ps(stream, {.max_packets_per_second = 10});
    std::error_code read_ec, last_ec = make_error_code(errc::bad_state);
    sync_wait([&]() -> task<> {
        read_ec = co_await read_until_error(ps);
        auto [ec] = co_await ps.close_with(kick_notice("kicked: flooding"), 1s);
        last_ec = ec;
    }());
    CHECK(read_ec == errc::rate_limited);
    CHECK_FALSE(last_ec);
    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == 1);
    CHECK(packets[0].type == kicked);
    CHECK(body_of(packets[0]) == "kicked: flooding");
    CHECK(ps.is_closed());
    CHECK(ps.close_reason() == errc::rate_limited); // the first reason stays
    CHECK(stream.context().pending() == 0);         // the deadline's timer ended
}

TEST_CASE("close_with after a malformed header and after an idle timeout", "[packet_stream_last_word]")
{
    SECTION("a header that declares too large a packet")
    {
        mock_stream stream;
        stream.push(encode(1, 200));
        packet_stream<mock_stream> ps(stream, {.format = {.max_packet_size = 100}});
        std::error_code read_ec, last_ec = make_error_code(errc::bad_state);
        sync_wait([&]() -> task<> {
            read_ec = co_await read_until_error(ps);
            auto [ec] = co_await ps.close_with(kick_notice("packet too large"), 1s);
            last_ec = ec;
        }());
        CHECK(read_ec == errc::packet_too_large);
        CHECK_FALSE(last_ec);
        const auto packets = decode_all(stream.written());
        REQUIRE(packets.size() == 1);
        CHECK(body_of(packets[0]) == "packet too large");
    }
    SECTION("a peer that went silent, cut by the watchdog")
    {
        mock_stream stream;
        stream.hold_reads();
        auto& timers = stream.context();
        packet_stream<mock_stream> ps(stream, {.idle_timeout = 1s});
        std::optional<std::error_code> read_ec, last_ec;
        sync_wait([&]() -> task<> {
            task_group group;
            group.spawn([](packet_stream<mock_stream>& s, std::optional<std::error_code>& r,
                           std::optional<std::error_code>& l) -> task<> {
                r = co_await read_until_error(s);
                auto [ec] = co_await s.close_with(kick_notice("idle too long"), 1s);
                l = ec;
            }(ps, read_ec, last_ec));
            timers.advance_by_steps(1100ms, 100ms);
            co_await group.join();
        }());
        REQUIRE(read_ec.has_value());
        CHECK(*read_ec == errc::idle_timeout);
        REQUIRE(last_ec.has_value());
        CHECK_FALSE(*last_ec);
        const auto packets = decode_all(stream.written());
        REQUIRE(packets.size() == 1);
        CHECK(body_of(packets[0]) == "idle too long");
    }
}

TEST_CASE("close_with follows the write in flight whole, and drops what was only queued", "[packet_stream_last_word]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(stream);
    std::optional<std::error_code> in_flight, last_ec;
    sync_wait([&]() -> task<> {
        task_group group;
        group.spawn([](packet_stream<mock_stream>& s, std::optional<std::error_code>& out) -> task<> {
            auto [ec] = co_await s.write_packet(1, std::string_view("in flight"));
            out = ec;
        }(ps, in_flight));
        REQUIRE(stream.write_held());
        REQUIRE_FALSE(ps.queue_packet(2, std::string_view("only queued")));
        group.spawn([](packet_stream<mock_stream>& s, std::optional<std::error_code>& out) -> task<> {
            auto [ec] = co_await s.close_with(kick_notice("bye"), 1s);
            out = ec;
        }(ps, last_ec));
        CHECK_FALSE(last_ec.has_value()); // waits behind the write in flight
        stream.release_writes();
        co_await group.join();
    }());
    REQUIRE(in_flight.has_value());
    CHECK_FALSE(*in_flight);
    REQUIRE(last_ec.has_value());
    CHECK_FALSE(*last_ec);
    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == 2);
    CHECK(body_of(packets[0]) == "in flight");
    CHECK(body_of(packets[1]) == "bye");
    CHECK(ps.close_reason() == errc::operation_aborted);
}

TEST_CASE("close_with to a peer that does not read: timed_out after the bounded wait, and closed",
          "[packet_stream_last_word]")
{
    mock_stream stream;
    stream.hold_writes();
    auto& timers = stream.context();
    packet_stream<mock_stream> ps(stream);
    std::optional<std::error_code> last_ec;
    sync_wait([&]() -> task<> {
        task_group group;
        group.spawn([](packet_stream<mock_stream>& s, std::optional<std::error_code>& out) -> task<> {
            auto [ec] = co_await s.close_with(kick_notice("bye"), 2s);
            out = ec;
        }(ps, last_ec));
        REQUIRE(stream.write_held());
        timers.advance(1s);
        CHECK_FALSE(last_ec.has_value());
        timers.advance(1100ms);
        co_await group.join();
    }());
    REQUIRE(last_ec.has_value());
    CHECK(*last_ec == errc::timed_out);
    CHECK(ps.is_closed());
    CHECK_FALSE(stream.write_held()); // the close cancelled the stalled write
    CHECK(stream.written().empty());
}

TEST_CASE("close_with after close(), a send-queue cut-off, or with a packet of another format",
          "[packet_stream_last_word]")
{
    mock_stream stream;
    SECTION("closed by close(): nothing can follow")
    {
        packet_stream<mock_stream> ps(stream);
        ps.close();
        auto [ec] = sync_wait(ps.close_with(kick_notice("bye"), 1s));
        CHECK(ec == errc::operation_aborted);
    }
    SECTION("cut off by the disconnect policy: the peer does not read")
    {
        stream.hold_writes();
        packet_stream<mock_stream> ps(
            stream, {.send = {.high_watermark = 100, .low_watermark = 10, .policy = overflow_policy::disconnect}});
        std::error_code refused;
        for (int i = 0; i < 10 && !refused; ++i) refused = ps.queue_packet(1, std::string(40, 'x'));
        REQUIRE(refused == errc::send_queue_full);
        auto [ec] = sync_wait(ps.close_with(kick_notice("too slow"), 1s));
        CHECK(ec == errc::send_queue_full);
    }
    SECTION("a packet in another header layout")
    {
        packet_stream<mock_stream> ps(stream);
        auto [made_ec, other] = shared_packet::make(packet_format{.type_bytes = 1}, 1, std::string_view("x"));
        REQUIRE_FALSE(made_ec);
        auto [ec] = sync_wait(ps.close_with(other, 1s));
        CHECK(ec == errc::invalid_argument);
        CHECK(ps.is_closed());
    }
    stream.context().run_deferred();
    CHECK(stream.written().empty());
}

TEST_CASE("send-queue grace: a burst above the watermark is forgiven, a reader that stopped is still cut off",
          "[packet_stream_last_word][grace]")
{
    mock_stream stream;
    stream.hold_writes();
    auto& timers = stream.context();
    const portico::packet_stream_options options{.send = {.high_watermark = 1000,
                                                          .low_watermark = 500,
                                                          .policy = overflow_policy::disconnect,
                                                          .grace_bytes = 1000,
                                                          .grace_period = 500ms}};
    const std::string body(96, 'b'); // 100-byte packets
    SECTION("a burst to 1,500 bytes that drains within the period: the stream stays")
    {
        packet_stream<mock_stream> ps(stream, options);
        for (int i = 0; i < 15; ++i) REQUIRE_FALSE(ps.queue_packet(1, body));
        CHECK(ps.queued_bytes() == 1500);
        timers.advance(200ms);
        stream.context().run_deferred();
        stream.release_writes(); // the reader catches up
        CHECK(ps.queued_bytes() == 0);
        CHECK_FALSE(ps.is_closed());
        // A new burst later gets a grace of its own.
        stream.hold_writes();
        timers.advance(1s);
        for (int i = 0; i < 15; ++i) REQUIRE_FALSE(ps.queue_packet(1, body));
        CHECK_FALSE(ps.is_closed());
    }
    SECTION("beyond the grace's bytes: cut off at once")
    {
        packet_stream<mock_stream> ps(stream, options);
        std::error_code refused;
        int accepted = 0;
        for (; accepted < 30 && !refused; ++accepted) refused = ps.queue_packet(1, body);
        CHECK(refused == errc::send_queue_full);
        CHECK(accepted == 21); // 20 fit in 1,000 + 1,000; the 21st is refused
        CHECK(ps.close_reason() == errc::send_queue_full);
    }
    SECTION("still over the watermark when the period has passed: cut off at the next packet")
    {
        packet_stream<mock_stream> ps(stream, options);
        for (int i = 0; i < 12; ++i) REQUIRE_FALSE(ps.queue_packet(1, body));
        timers.advance(400ms);
        REQUIRE_FALSE(ps.queue_packet(1, body)); // within the period
        timers.advance(200ms);
        CHECK(ps.queue_packet(1, body) == errc::send_queue_full);
        CHECK(ps.close_reason() == errc::send_queue_full);
    }
    SECTION("without a grace, the first packet over the watermark cuts it off")
    {
        auto strict = options;
        strict.send.grace_bytes = 0;
        strict.send.grace_period = 0ms;
        packet_stream<mock_stream> ps(stream, strict);
        for (int i = 0; i < 10; ++i) REQUIRE_FALSE(ps.queue_packet(1, body));
        CHECK(ps.queue_packet(1, body) == errc::send_queue_full);
        CHECK(ps.is_closed());
    }
    // The flush each section left deferred holds the stream's state: run it,
    // so that the state (and what it queued) is freed.
    stream.context().run_deferred();
    stream.release_writes();
}
