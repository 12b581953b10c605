#include <portico/framing/packet_format.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

using portico::byte_order;
using portico::decode_header;
using portico::encode_header;
using portico::errc;
using portico::packet_format;

namespace {

std::vector<std::byte> bytes(std::initializer_list<unsigned> values)
{
    std::vector<std::byte> out;
    for (unsigned v : values) out.push_back(static_cast<std::byte>(v));
    return out;
}

} // namespace

TEST_CASE("the default header is u16 size (whole packet) then u16 type, little-endian", "[packet_format]")
{
    const packet_format f;
    CHECK(f.valid());
    CHECK(f.header_size() == 4);
    CHECK(f.largest_packet() == 0xFFFF);
    std::array<std::byte, 4> out{};
    auto [ec, n] = encode_header(f, 0x0102, 3, out);
    REQUIRE_FALSE(ec);
    CHECK(n == 4);
    CHECK(std::vector<std::byte>(out.begin(), out.end()) == bytes({0x07, 0x00, 0x02, 0x01}));

    auto [dec, header] = decode_header(f, bytes({0x07, 0x00, 0x02, 0x01}));
    REQUIRE_FALSE(dec);
    CHECK(header.type == 0x0102);
    CHECK(header.body_size == 3);
}

TEST_CASE("big-endian, body-only size, 4-byte fields", "[packet_format]")
{
    packet_format f;
    f.size_bytes = 4;
    f.type_bytes = 1;
    f.order = byte_order::big;
    f.size_includes_header = false;
    std::array<std::byte, 5> out{};
    REQUIRE_FALSE(encode_header(f, 0xAB, 0x0102, out).error());
    CHECK(std::vector<std::byte>(out.begin(), out.end()) == bytes({0x00, 0x00, 0x01, 0x02, 0xAB}));
    auto [ec, header] = decode_header(f, out);
    REQUIRE_FALSE(ec);
    CHECK(header.type == 0xAB);
    CHECK(header.body_size == 0x0102);
}

TEST_CASE("every format round-trips every body size boundary", "[packet_format]")
{
    for (const packet_format& f : portico::test::all_packet_formats()) {
        INFO("size " << f.size_bytes << ", type " << f.type_bytes << ", big " << (f.order == byte_order::big)
                     << ", includes header " << f.size_includes_header);
        REQUIRE(f.valid());
        const std::uint32_t type =
            f.type_bytes == 0 ? 0 : (f.type_bytes == 4 ? 0xFEDCBA98u : (1u << (8 * f.type_bytes)) - 2);
        const std::size_t largest_body = f.largest_packet() - f.header_size();
        for (std::size_t body : {std::size_t{0}, std::size_t{1}, std::size_t{255}, largest_body - 1, largest_body}) {
            std::array<std::byte, 8> out{};
            auto [ec, n] = encode_header(f, type, body, out);
            REQUIRE_FALSE(ec);
            CHECK(n == f.header_size());
            auto [dec, header] = decode_header(f, std::span(out).first(n));
            REQUIRE_FALSE(dec);
            CHECK(header.type == type);
            CHECK(header.body_size == body);
        }
        std::array<std::byte, 8> out{};
        CHECK(encode_header(f, type, largest_body + 1, out).error() == errc::packet_too_large);
    }
}

TEST_CASE("hostile sizes are rejected from the header alone", "[packet_format]")
{
    // 4-byte size counting the header, max 64 KiB.
    packet_format f;
    f.size_bytes = 4;
    f.type_bytes = 2;
    const std::size_t max = f.max_packet_size;
    auto header_with_size = [&](std::uint64_t size) {
        std::vector<std::byte> h(f.header_size());
        portico::detail::store_uint(h.data(), 4, f.order, static_cast<std::uint32_t>(size));
        return h;
    };
    CHECK_FALSE(decode_header(f, header_with_size(max)).error());
    CHECK(decode_header(f, header_with_size(max + 1)).error() == errc::packet_too_large);
    CHECK(decode_header(f, header_with_size(0x7FFFFFFF)).error() == errc::packet_too_large);
    CHECK(decode_header(f, header_with_size(0xFFFFFFFF)).error() == errc::packet_too_large);
    CHECK(decode_header(f, header_with_size(0)).error() == errc::packet_malformed);
    CHECK(decode_header(f, header_with_size(f.header_size() - 1)).error() == errc::packet_malformed);
    auto [ec, empty] = decode_header(f, header_with_size(f.header_size()));
    CHECK_FALSE(ec);
    CHECK(empty.body_size == 0);

    // Body-only sizes: 0 is an empty body, and the header counts towards max.
    f.size_includes_header = false;
    CHECK_FALSE(decode_header(f, header_with_size(0)).error());
    CHECK_FALSE(decode_header(f, header_with_size(max - f.header_size())).error());
    CHECK(decode_header(f, header_with_size(max - f.header_size() + 1)).error() == errc::packet_too_large);
    CHECK(decode_header(f, header_with_size(0xFFFFFFFF)).error() == errc::packet_too_large);
}

TEST_CASE("bad arguments are refused", "[packet_format]")
{
    const packet_format f;
    std::array<std::byte, 3> short_buffer{};
    CHECK(encode_header(f, 1, 0, short_buffer).error() == errc::invalid_argument);
    CHECK(decode_header(f, short_buffer).error() == errc::invalid_argument);
    std::array<std::byte, 4> out{};
    CHECK(encode_header(f, 0x10000, 0, out).error() == errc::invalid_argument); // type wider than 2 bytes
    packet_format odd;
    odd.size_bytes = 3;
    CHECK_FALSE(odd.valid());
    CHECK(encode_header(odd, 1, 0, out).error() == errc::invalid_argument);
    packet_format tiny;
    tiny.max_packet_size = 3;
    CHECK_FALSE(tiny.valid());
}
