// The awaiters of write_packet_op.hpp, made by packet_stream::write_packet()
// over the mock stream: what each refuses before sending anything, what it
// sends (a span of buffers, a shared packet), and that it moves until it is
// awaited.
#include <portico/framing/write_packet_op.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/framing/packet_stream.hpp>
#include <portico/framing/shared_packet.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"
#include "support/mock_stream.hpp"
#include "support/written_packets.hpp"

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

using portico::const_buffer;
using portico::errc;
using portico::packet_format;
using portico::packet_stream;
using portico::shared_packet;
using portico::sync_wait;
using portico::task;
using portico::test::bytes_of;
using portico::test::decode_all;
using portico::test::mock_stream;

// Movable until awaited (with_timeout and when_all take awaitables by
// value), never copied: the awaiter is the queue node.
static_assert(std::is_nothrow_move_constructible_v<portico::write_packet_op<mock_stream, 2>>);
static_assert(std::is_nothrow_move_constructible_v<portico::write_packet_gather_op<mock_stream>>);
static_assert(std::is_nothrow_move_constructible_v<portico::write_shared_op<mock_stream>>);
static_assert(!std::is_copy_constructible_v<portico::write_packet_op<mock_stream, 2>>);
static_assert(!std::is_copy_constructible_v<portico::write_shared_op<mock_stream>>);

TEST_CASE("write_packet refuses what it cannot encode, sending nothing", "[write_packet_op]")
{
    mock_stream stream;
    packet_format small;
    small.max_packet_size = 100;
    small.type_bytes = 1;
    packet_stream<mock_stream> ps(stream, small);
    sync_wait([&]() -> task<> {
        std::vector<std::byte> body(98); // 3-byte header + 98 = 101
        auto [too_large] = co_await ps.write_packet(1, body);
        CHECK(too_large == errc::packet_too_large);
        auto [too_wide] = co_await ps.write_packet(256, std::string("x"));
        CHECK(too_wide == errc::invalid_argument);
        body.resize(97);
        auto [fits] = co_await ps.write_packet(255, body);
        CHECK_FALSE(fits);
    }());
    CHECK(stream.writes() == 1);
    CHECK_FALSE(ps.is_closed());
}

TEST_CASE("write_packet with a span of buffers gathers them", "[write_packet_op]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(stream);
    const std::string parts[] = {"one ", "two ", "three"};
    std::vector<const_buffer> buffers;
    for (const auto& p : parts) buffers.push_back(portico::buffer(p));
    sync_wait([&]() -> task<> {
        auto [ec] = co_await ps.write_packet(9, std::span<const const_buffer>(buffers));
        CHECK_FALSE(ec);
    }());
    const auto packets = decode_all(packet_format{}, stream.written());
    REQUIRE(packets.size() == 1);
    CHECK(packets[0].body == bytes_of("one two three"));
}

TEST_CASE("shared_packet: encoded once, the same bytes on every stream, released after the writes", "[write_packet_op]")
{
    auto [ec, shared] = shared_packet::make(packet_format{}, 42, std::string("to everyone"));
    REQUIRE_FALSE(ec);
    std::vector<mock_stream> streams(3);
    std::vector<packet_stream<mock_stream>> framed;
    for (auto& s : streams) framed.emplace_back(s);
    sync_wait([&]() -> task<> {
        for (auto& ps : framed) {
            auto [write_ec] = co_await ps.write_packet(shared);
            CHECK_FALSE(write_ec);
        }
    }());
    CHECK(shared.use_count() == 1);
    for (auto& s : streams) {
        const auto written = s.written();
        CHECK(written == std::vector<std::byte>(shared.bytes().begin(), shared.bytes().end()));
        const auto packets = decode_all(packet_format{}, written);
        REQUIRE(packets.size() == 1);
        CHECK(packets[0].type == 42);
        CHECK(packets[0].body == bytes_of("to everyone"));
    }
}

TEST_CASE("shared_packet: a different header layout or a size over the stream's maximum is refused",
          "[write_packet_op]")
{
    packet_format big_endian;
    big_endian.order = portico::byte_order::big;
    auto [ec1, other_layout] = shared_packet::make(big_endian, 1, std::string("x"));
    REQUIRE_FALSE(ec1);
    auto [ec2, large] = shared_packet::make(packet_format{}, 1, std::vector<std::byte>(200));
    REQUIRE_FALSE(ec2);
    mock_stream stream;
    packet_format small;
    small.max_packet_size = 100;
    packet_stream<mock_stream> ps(stream, small);
    sync_wait([&]() -> task<> {
        auto [layout] = co_await ps.write_packet(other_layout);
        CHECK(layout == errc::invalid_argument);
        auto [size] = co_await ps.write_packet(large);
        CHECK(size == errc::packet_too_large);
        auto [empty] = co_await ps.write_packet(shared_packet{});
        CHECK(empty == errc::invalid_argument);
    }());
    CHECK(stream.writes() == 0);
    CHECK(large.use_count() == 1);
}

// A string literal as a body would send its terminating '\0' too ("hello"
// is 6 bytes): write_packet, queue_packet and shared_packet::make refuse
// character arrays at compile time, and take the characters as a
// string_view. Byte arrays stay accepted.
namespace {
using literal_stream = packet_stream<mock_stream>;
template <class Body>
concept writable_body = requires(literal_stream& ps, const Body& b) { ps.write_packet(1, b); };
template <class Body>
concept queueable_body = requires(literal_stream& ps, const Body& b) { ps.queue_packet(1, b); };
template <class Body>
concept shareable_body = requires(const Body& b) { shared_packet::make(packet_format{}, 1, b); };
} // namespace
static_assert(!writable_body<char[6]>, "a string literal is refused by write_packet");
static_assert(!queueable_body<char[6]>, "a string literal is refused by queue_packet");
static_assert(!shareable_body<char[6]>, "a string literal is refused by shared_packet::make");
static_assert(!writable_body<wchar_t[3]> && !writable_body<char8_t[3]>, "so are wide and UTF-8 literals");
static_assert(writable_body<std::string_view> && queueable_body<std::string_view> && shareable_body<std::string_view>);
static_assert(writable_body<unsigned char[4]> && writable_body<std::byte[4]>, "byte arrays are bytes");

TEST_CASE("a string_view body is its characters: \"hello\" is 5 bytes", "[write_packet_op]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(stream);
    sync_wait([&]() -> task<> {
        auto [ec] = co_await ps.write_packet(1, std::string_view("hello"));
        CHECK_FALSE(ec);
    }());
    const auto packets = decode_all(packet_format{}, stream.written());
    REQUIRE(packets.size() == 1);
    CHECK(packets[0].body == bytes_of("hello"));
    auto [made_ec, shared] = shared_packet::make(packet_format{}, 1, std::string_view("hello"));
    REQUIRE_FALSE(made_ec);
    CHECK(shared.body().size() == 5);
}
