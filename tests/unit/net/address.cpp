#include <portico/net/address.hpp>

#include "support/catch.hpp"

#include <string>
#include <unordered_set>

using portico::address;
using portico::address_v4;
using portico::address_v6;
using portico::errc;

namespace {

std::string v6_round_trip(const char* text)
{
    auto [ec, a] = address_v6::parse(text);
    if (ec) return "error: " + ec.message();
    return a.to_string();
}

} // namespace

TEST_CASE("address_v4 parses dotted decimal and formats it back", "[address]")
{
    auto [ec, a] = address_v4::parse("192.168.0.10");
    REQUIRE_FALSE(ec);
    CHECK(a.to_bytes() == address_v4::bytes_type{192, 168, 0, 10});
    CHECK(a.to_uint() == 0xC0A8000Au);
    CHECK(a.to_string() == "192.168.0.10");
    CHECK(address_v4::parse("0.0.0.0").value() == address_v4::any());
    CHECK(address_v4::parse("255.255.255.255").value() == address_v4::broadcast());
    CHECK(address_v4::loopback().to_string() == "127.0.0.1");
    CHECK(address_v4::loopback().is_loopback());
    CHECK(address_v4::parse("127.200.0.1").value().is_loopback());
    CHECK(address_v4::parse("239.1.2.3").value().is_multicast());
    CHECK_FALSE(address_v4::parse("192.168.0.1").value().is_multicast());
    CHECK(address_v4::any().is_unspecified());
}

TEST_CASE("address_v4 refuses malformed text with bad_address", "[address]")
{
    for (const char* text : {"", "1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4",
                             "1..2.3", "1.2.3.", "a.b.c.d", "1.2.3.4:80", "1234.1.1.1", "::1"}) {
        INFO("text: '" << text << "'");
        auto [ec, a] = address_v4::parse(text);
        CHECK(ec == errc::bad_address);
        CHECK(ec == std::errc::invalid_argument);
        (void)a;
    }
}

TEST_CASE("address_v6 parses RFC 4291 text and formats it per RFC 5952", "[address]")
{
    CHECK(v6_round_trip("::") == "::");
    CHECK(v6_round_trip("::1") == "::1");
    CHECK(v6_round_trip("1::") == "1::");
    CHECK(v6_round_trip("2001:DB8:0:0:0:0:0:1") == "2001:db8::1");
    CHECK(v6_round_trip("2001:0db8:0000:0000:0001:0000:0000:0001") == "2001:db8::1:0:0:1"); // first longest run
    CHECK(v6_round_trip("2001:db8:0:1:1:1:1:1") == "2001:db8:0:1:1:1:1:1");                 // one zero: not compressed
    CHECK(v6_round_trip("2001:db8:0:0:1:0:0:0") == "2001:db8:0:0:1::");                     // longest run wins
    CHECK(v6_round_trip("fe80::1%3") == "fe80::1%3");
    CHECK(v6_round_trip("::ffff:10.0.0.1") == "::ffff:10.0.0.1");
    CHECK(v6_round_trip("::FFFF:a00:1") == "::ffff:10.0.0.1");
    CHECK(v6_round_trip("64:ff9b::192.0.2.33") == "64:ff9b::c000:221");
    CHECK(v6_round_trip("1:2:3:4:5:6:7::") == "1:2:3:4:5:6:7:0");
    CHECK(v6_round_trip("1:2:3:4:5:6:1.2.3.4") == "1:2:3:4:5:6:102:304");

    auto a = address_v6::parse("fe80::1%42").value();
    CHECK(a.scope_id() == 42u);
    CHECK(a.is_link_local());
    CHECK(address_v6::loopback().is_loopback());
    CHECK(address_v6::parse("ff02::1").value().is_multicast());
    CHECK(address_v6::any().is_unspecified());

    const auto mapped = address_v6::v4_mapped(address_v4::loopback());
    CHECK(mapped.is_v4_mapped());
    CHECK(mapped.to_v4() == address_v4::loopback());
    CHECK_THROWS_AS(address_v6::loopback().to_v4(), std::logic_error);
}

TEST_CASE("address_v6 refuses malformed text with bad_address", "[address]")
{
    for (const char* text : {"",
                             ":",
                             ":::",
                             "1:2:3:4:5:6:7",
                             "1:2:3:4:5:6:7:8:9",
                             "1::2::3",
                             ":1::",
                             "1:",
                             "1::2:",
                             "12345::",
                             "g::1",
                             "1:2:3:4:5:6:7:8::",
                             "::1:2:3:4:5:6:7:8",
                             "::1.2.3",
                             "::1.2.3.4.5",
                             "1.2.3.4",
                             "::256.1.1.1",
                             "1:2:3:4:5:6:7:1.2.3.4",
                             "fe80::1%",
                             "fe80::1%eth0",
                             "fe80::1%99999999999",
                             "[::1]",
                             " ::1"}) {
        INFO("text: '" << text << "'");
        auto [ec, a] = address_v6::parse(text);
        CHECK(ec == errc::bad_address);
        (void)a;
    }
}

TEST_CASE("address holds either family, orders v4 first, hashes", "[address]")
{
    const address v4 = address::parse("10.0.0.1").value();
    const address v6 = address::parse("::1").value();
    CHECK(v4.is_v4());
    CHECK(v6.is_v6());
    CHECK(v4.to_string() == "10.0.0.1");
    CHECK(v6.to_string() == "::1");
    CHECK(v4 < v6);
    CHECK(v4 != v6);
    CHECK(v6.is_loopback());
    CHECK_THROWS_AS(v4.to_v6(), std::logic_error);
    CHECK_THROWS_AS(v6.to_v4(), std::logic_error);
    CHECK(address::parse("not an address").error() == errc::bad_address);

    std::unordered_set<address> set{v4, v6, address::parse("10.0.0.1").value()};
    CHECK(set.size() == 2);
}
