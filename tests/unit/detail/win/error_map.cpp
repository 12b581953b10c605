#include <portico/detail/win/error_map.hpp>

#include "support/catch.hpp"

using portico::errc;
using portico::detail::win::socket_error;

// The inputs are raw Win32/Winsock values, as the system reports them; the
// assertions are on portable conditions only.
TEST_CASE("socket errors map to portable conditions", "[error_map]")
{
    CHECK_FALSE(socket_error(0));
    CHECK(socket_error(ERROR_OPERATION_ABORTED) == errc::operation_aborted);
    CHECK(socket_error(WSAEINTR) == std::errc::operation_canceled);
    CHECK(socket_error(WSAENOTSOCK) == errc::operation_aborted);
    CHECK(socket_error(ERROR_NETNAME_DELETED) == errc::connection_reset);
    CHECK(socket_error(WSAECONNRESET) == std::errc::connection_reset);
    CHECK(socket_error(ERROR_CONNECTION_ABORTED) == errc::connection_aborted);
    CHECK(socket_error(WSAECONNABORTED) == errc::connection_aborted);
    CHECK(socket_error(ERROR_CONNECTION_REFUSED) == errc::connection_refused);
    CHECK(socket_error(WSAECONNREFUSED) == std::errc::connection_refused);
    CHECK(socket_error(ERROR_SEM_TIMEOUT) == errc::timed_out);
    CHECK(socket_error(WSAETIMEDOUT) == std::errc::timed_out);
    CHECK(socket_error(WSAEADDRINUSE) == std::errc::address_in_use);
    CHECK(socket_error(WSAEHOSTUNREACH) == errc::network_unreachable);
    CHECK(socket_error(WSAENOBUFS) == errc::no_resources);
}

TEST_CASE("an unknown socket error passes through unchanged", "[error_map]")
{
    const auto ec = socket_error(ERROR_FILE_NOT_FOUND);
    CHECK(ec.category() == std::system_category());
    CHECK(ec.category() != portico::error_category());
    CHECK(ec);
}
