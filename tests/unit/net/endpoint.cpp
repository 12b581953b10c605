#include <portico/net/endpoint.hpp>

#include "support/catch.hpp"

#include <unordered_set>

using portico::address_v4;
using portico::address_v6;
using portico::endpoint;
using portico::errc;

TEST_CASE("endpoint parses and formats IPv4 and bracketed IPv6", "[endpoint]")
{
    auto [ec, e] = endpoint::parse("127.0.0.1:8080");
    REQUIRE_FALSE(ec);
    CHECK(e.addr() == address_v4::loopback());
    CHECK(e.port() == 8080);
    CHECK(e.to_string() == "127.0.0.1:8080");

    auto six = endpoint::parse("[::1]:8080").value();
    CHECK(six.is_v6());
    CHECK(six.addr() == address_v6::loopback());
    CHECK(six.to_string() == "[::1]:8080");

    CHECK(endpoint::parse("[fe80::1%2]:0").value().to_string() == "[fe80::1%2]:0");
    CHECK(endpoint::parse("0.0.0.0:65535").value().port() == 65535);

    for (const char* text : {"1.2.3.4:80", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:7", "0.0.0.0:0"}) {
        INFO(text);
        CHECK(endpoint::parse(endpoint::parse(text).value().to_string()).value() == endpoint::parse(text).value());
        CHECK(endpoint::parse(text).value().to_string() == text);
    }
}

TEST_CASE("endpoint refuses malformed text with bad_address", "[endpoint]")
{
    for (const char* text : {"", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:08",
                             "127.0.0.1:80x", "::1:80", "[::1]", "[::1]:", "[::1:80", "::1]:80", "[127.0.0.1]:80",
                             "localhost:80", "1.2.3.4:80:90", "[::1]80"}) {
        INFO("text: '" << text << "'");
        auto [ec, e] = endpoint::parse(text);
        CHECK(ec == errc::bad_address);
        CHECK(ec.message() == "malformed address or endpoint text");
        (void)e;
    }
}

TEST_CASE("endpoints compare by address then port, and hash", "[endpoint]")
{
    const auto a = endpoint::parse("10.0.0.1:80").value();
    const auto b = endpoint::parse("10.0.0.1:81").value();
    const auto c = endpoint::parse("[::1]:1").value();
    CHECK(a < b);
    CHECK(b < c);
    CHECK(a == endpoint(address_v4::parse("10.0.0.1").value(), 80));
    std::unordered_set<endpoint> set{a, b, c, a};
    CHECK(set.size() == 3);
}
