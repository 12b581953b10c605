// tcp_socket::set_keep_alive(idle, interval): TCP keep-alive with its timing
// (SIO_KEEPALIVE_VALS), and its errors as portable conditions.
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/loopback.hpp"

#include <chrono>
#include <system_error>

using namespace std::chrono_literals;

using portico::errc;
using portico::tcp_socket;

PORTICO_IO_TEST_CASE("set_keep_alive(idle, interval) on both ends of a connection: accepted, and the connection "
                     "still carries bytes",
                     "[tcp_keep_alive]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    for (tcp_socket* s : {&client, &server}) {
        auto [ec] = s->set_keep_alive(30s, 5s);
        CHECK_FALSE(ec);
        // The shortest the call takes, and the longest.
        CHECK_FALSE(s->set_keep_alive(1ms, 1ms).error());
        CHECK_FALSE(s->set_keep_alive(std::chrono::milliseconds(0xFFFFFFFFLL), 1s).error());
    }
    const char hello[] = "hi";
    auto [write_ec, n] = co_await client.write_all(portico::buffer(hello, 2));
    CHECK_FALSE(write_ec);
    char got[2] = {};
    auto [read_ec, m] = co_await server.read_all(portico::buffer(got, 2));
    CHECK_FALSE(read_ec);
    CHECK(m == 2);
}

PORTICO_CO_TEST_CASE("set_keep_alive(idle, interval) fails with portable conditions: bad_state on a closed or "
                     "never-opened socket, invalid_argument for times out of range",
                     "[tcp_keep_alive]")
{
    tcp_socket never_opened(ctx);
    CHECK(never_opened.set_keep_alive(30s, 5s).error() == errc::bad_state);

    auto [client, server] = co_await portico::test::connected_pair(ctx);
    client.close();
    CHECK(client.set_keep_alive(30s, 5s).error() == errc::bad_state);

    CHECK(server.set_keep_alive(0ms, 5s).error() == errc::invalid_argument);
    CHECK(server.set_keep_alive(30s, 0ms).error() == errc::invalid_argument);
    CHECK(server.set_keep_alive(-1s, 5s).error() == errc::invalid_argument);
    CHECK(server.set_keep_alive(std::chrono::milliseconds(0x100000000LL), 5s).error() == errc::invalid_argument);
    CHECK(server.set_keep_alive(30s, std::chrono::hours(24 * 50)).error() == errc::invalid_argument);
    CHECK(server.set_keep_alive(30s, 5s).error() == std::error_code{}); // still usable after the refusals
}
