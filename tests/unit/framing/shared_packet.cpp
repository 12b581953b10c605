#include <portico/framing/shared_packet.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"

#include <array>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

using portico::errc;
using portico::packet_format;
using portico::shared_packet;

TEST_CASE("shared_packet::make encodes header and gathered body once, in every format", "[shared_packet]")
{
    for (const packet_format& f : portico::test::all_packet_formats()) {
        const std::string a = "broad", b = "cast";
        const std::array<portico::const_buffer, 2> body{portico::buffer(a), portico::buffer(b)};
        const std::uint32_t type = f.type_bytes == 0 ? 0 : 200;
        auto [ec, p] = shared_packet::make(f, type, body);
        REQUIRE_FALSE(ec);
        REQUIRE(p.bytes().size() == f.header_size() + 9);
        auto [header_ec, header] = portico::decode_header(f, p.bytes());
        REQUIRE_FALSE(header_ec);
        CHECK(header.type == type);
        CHECK(header.body_size == 9);
        CHECK(std::string(reinterpret_cast<const char*>(p.body().data()), p.body().size()) == "broadcast");
        CHECK(p.type() == type);
        CHECK(p.format().header_size() == f.header_size());
    }
}

TEST_CASE("shared_packet::make refuses what the format cannot carry", "[shared_packet]")
{
    packet_format f;
    f.type_bytes = 1;
    f.max_packet_size = 64;
    auto [too_large, p1] = shared_packet::make(f, 1, std::vector<std::byte>(62));
    CHECK(too_large == errc::packet_too_large);
    CHECK_FALSE(p1);
    auto [too_wide, p2] = shared_packet::make(f, 256, std::string("x"));
    CHECK(too_wide == errc::invalid_argument);
    CHECK_FALSE(p2);
    auto [fits, p3] = shared_packet::make(f, 255, std::vector<std::byte>(61));
    CHECK_FALSE(fits);
    CHECK(p3.bytes().size() == 64);
}

TEST_CASE("shared_packet copies share one block, released by the last owner on any thread", "[shared_packet]")
{
    auto [ec, p] = shared_packet::make(packet_format{}, 7, std::string("shared"));
    REQUIRE_FALSE(ec);
    const auto* bytes = p.bytes().data();
    {
        std::vector<shared_packet> copies(100, p);
        CHECK(p.use_count() == 101);
        CHECK(copies.back().bytes().data() == bytes);
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&copies, t] {
                for (std::size_t i = static_cast<std::size_t>(t); i < copies.size(); i += 4) {
                    shared_packet moved = std::move(copies[i]);
                    shared_packet again = moved;
                }
            });
        }
        for (auto& t : threads) t.join();
    }
    CHECK(p.use_count() == 1);
    shared_packet empty;
    CHECK(empty.use_count() == 0);
    CHECK(empty.bytes().empty());
}
