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

TEST_CASE("completion statuses map to portable conditions without the socket handle", "[error_map]")
{
    using portico::detail::win::completion_error;
    // NTSTATUS values as a completion packet carries them (ntstatus.h).
    CHECK_FALSE(completion_error(0));
    CHECK(completion_error(0xC0000120u) == errc::operation_aborted);     // STATUS_CANCELLED
    CHECK(completion_error(0x8000000Au) == errc::operation_aborted);     // STATUS_HANDLES_CLOSED (Wine)
    CHECK(completion_error(0xC000020Du) == errc::connection_reset);      // STATUS_CONNECTION_RESET
    CHECK(completion_error(0xC000013Cu) == std::errc::connection_reset); // STATUS_REMOTE_DISCONNECT
    CHECK(completion_error(0xC0000241u) == errc::connection_aborted);    // STATUS_CONNECTION_ABORTED
    CHECK(completion_error(0xC0000236u) == errc::connection_refused);    // STATUS_CONNECTION_REFUSED
    CHECK(completion_error(0xC00000B5u) == errc::timed_out);             // STATUS_IO_TIMEOUT
    CHECK(completion_error(0xC000023Cu) == errc::network_unreachable);   // STATUS_NETWORK_UNREACHABLE
    CHECK(completion_error(0xC000009Au) == errc::no_resources);          // STATUS_INSUFFICIENT_RESOURCES
    // Anything else is translated by the system, never silently dropped.
    CHECK(completion_error(0xC0000022u)); // STATUS_ACCESS_DENIED
}
