#include <portico/framing/packet_stream.hpp>

#include <portico/coro/sync_wait.hpp>

#include "support/catch.hpp"
#include "support/mock_stream.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

using portico::errc;
using portico::packet_format;
using portico::packet_stream;
using portico::sync_wait;
using portico::test::mock_stream;

namespace {

/// The default format's encoding of a packet of `type` whose body is
/// `size` bytes of `fill`.
std::vector<std::byte> encode(std::uint32_t type, std::size_t size, unsigned char fill = 0x5A)
{
    std::vector<std::byte> out(4 + size, static_cast<std::byte>(fill));
    REQUIRE_FALSE(portico::encode_header(packet_format{}, type, size, out).error());
    return out;
}

void append(std::vector<std::byte>& to, const std::vector<std::byte>& bytes)
{
    to.insert(to.end(), bytes.begin(), bytes.end());
}

} // namespace

TEST_CASE("50 packets and half of the 51st in one read: 50 delivered without another read", "[packet_stream]")
{
    mock_stream stream;
    std::vector<std::byte> burst;
    for (std::uint32_t i = 0; i < 50; ++i) append(burst, encode(i, 10 + i));
    const auto last = encode(50, 40);
    burst.insert(burst.end(), last.begin(), last.begin() + 20);
    stream.push(burst);
    stream.push(std::span(last).subspan(20));

    packet_stream<mock_stream> ps(stream, {.receive_buffer = 8192});
    for (std::uint32_t i = 0; i < 50; ++i) {
        auto [ec, p] = sync_wait(ps.read_packet());
        REQUIRE_FALSE(ec);
        CHECK(p.type == i);
        CHECK(p.body.size() == 10 + i);
    }
    CHECK(stream.reads() == 1); // one read, fifty packets
    auto [ec, p] = sync_wait(ps.read_packet());
    REQUIRE_FALSE(ec);
    CHECK(p.type == 50);
    CHECK(p.body.size() == 40);
    CHECK(stream.reads() == 2);
}

TEST_CASE("the end of the stream: eof between packets, packet_truncated inside one", "[packet_stream]")
{
    const auto packet = encode(7, 12);
    for (std::size_t cut = 0; cut <= packet.size(); ++cut) {
        INFO("stream ends after " << cut << " bytes of the second packet");
        mock_stream stream;
        stream.push(encode(1, 3));
        if (cut != 0) stream.push(std::span(packet).first(cut));
        packet_stream<mock_stream> ps(stream);
        auto [first_ec, first] = sync_wait(ps.read_packet());
        REQUIRE_FALSE(first_ec);
        CHECK(first.type == 1);
        auto [ec, p] = sync_wait(ps.read_packet());
        if (cut == 0) {
            CHECK(ec == errc::eof);
        } else if (cut == packet.size()) {
            CHECK_FALSE(ec);
            CHECK(p.type == 7);
        } else {
            CHECK(ec == errc::packet_truncated);
        }
    }
}

TEST_CASE("an error injected at every step of a read is returned, after every whole packet", "[packet_stream]")
{
    std::vector<std::byte> bytes;
    for (std::uint32_t i = 0; i < 4; ++i) append(bytes, encode(i, 5 * i));
    for (auto injected : {errc::connection_reset, errc::operation_aborted}) {
        for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
            INFO("error after " << cut << " bytes");
            mock_stream stream;
            if (cut != 0) stream.push(std::span(bytes).first(cut));
            stream.push_error(make_error_code(injected));
            packet_stream<mock_stream> ps(stream);
            // Packets entirely inside the first `cut` bytes come out first.
            std::size_t whole = 0;
            for (std::size_t offset = 0, i = 0; i < 4; ++i) {
                offset += 4 + 5 * i;
                if (offset <= cut) ++whole;
            }
            for (std::size_t i = 0; i < whole; ++i) {
                auto [ec, p] = sync_wait(ps.read_packet());
                REQUIRE_FALSE(ec);
                CHECK(p.type == i);
            }
            auto [ec, p] = sync_wait(ps.read_packet());
            CHECK(ec == injected);
        }
    }
}

TEST_CASE("a hostile size fails from the header alone: no body read, no growth", "[packet_stream]")
{
    packet_format f;
    f.size_bytes = 4;
    std::vector<std::byte> header(6);
    portico::detail::store_uint(header.data(), 4, f.order, 0x7FFFFFFF);
    portico::detail::store_uint(header.data() + 4, 2, f.order, 1);
    mock_stream stream;
    stream.push(header);
    stream.push(std::vector<std::byte>(1000, std::byte{0})); // a body that must not be read
    packet_stream<mock_stream> ps(stream, {.format = f, .receive_buffer = 64});
    auto [ec, p] = sync_wait(ps.read_packet());
    CHECK(ec == errc::packet_too_large);
    CHECK(stream.reads() == 1);
    CHECK(stream.unread() == 1000);
    // The stream is closed: every later call reports why.
    CHECK(ps.close_reason() == errc::packet_too_large);
    auto [again, q] = sync_wait(ps.read_packet());
    CHECK(again == errc::packet_too_large);
    CHECK(stream.reads() == 1);
}

TEST_CASE("a packet larger than the initial buffer is read whole", "[packet_stream]")
{
    mock_stream stream;
    const auto big = encode(3, 20000, 0x33);
    stream.push(big);
    packet_stream<mock_stream> ps(stream, {.receive_buffer = 64});
    auto [ec, p] = sync_wait(ps.read_packet());
    REQUIRE_FALSE(ec);
    CHECK(p.type == 3);
    CHECK(std::vector<std::byte>(p.body.begin(), p.body.end()) == std::vector<std::byte>(big.begin() + 4, big.end()));
}
