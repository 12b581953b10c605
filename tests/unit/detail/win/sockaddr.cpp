#include <portico/detail/win/sockaddr.hpp>

#include "support/catch.hpp"

using portico::endpoint;
using portico::detail::win::from_sockaddr;
using portico::detail::win::to_sockaddr;

TEST_CASE("endpoints round-trip through Winsock socket addresses", "[sockaddr]")
{
    for (const char* text : {"127.0.0.1:8080", "0.0.0.0:0", "255.255.255.255:65535", "[::1]:443", "[fe80::1%7]:9",
                             "[::ffff:10.0.0.1]:1"}) {
        INFO(text);
        const auto e = endpoint::parse(text).value();
        SOCKADDR_STORAGE storage;
        const int length = to_sockaddr(e, storage);
        CHECK(length == (e.is_v4() ? static_cast<int>(sizeof(SOCKADDR_IN)) : static_cast<int>(sizeof(SOCKADDR_IN6))));
        CHECK(storage.ss_family == (e.is_v4() ? AF_INET : AF_INET6));
        const auto back = from_sockaddr(reinterpret_cast<const SOCKADDR*>(&storage), length);
        REQUIRE(back.has_value());
        CHECK(*back == e);
    }
}

TEST_CASE("from_sockaddr refuses other families and short lengths", "[sockaddr]")
{
    SOCKADDR_STORAGE storage{};
    const int length = to_sockaddr(endpoint::parse("1.2.3.4:5").value(), storage);
    CHECK_FALSE(from_sockaddr(reinterpret_cast<const SOCKADDR*>(&storage), length - 1).has_value());
    storage.ss_family = AF_UNIX;
    CHECK_FALSE(from_sockaddr(reinterpret_cast<const SOCKADDR*>(&storage), sizeof storage).has_value());
    CHECK_FALSE(from_sockaddr(nullptr, 0).has_value());
}
