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

TEST_CASE("file errors map to portable conditions", "[error_map]")
{
    using portico::detail::win::file_error;
    CHECK_FALSE(file_error(0));
    CHECK(file_error(ERROR_HANDLE_EOF) == errc::eof);
    CHECK(file_error(ERROR_BROKEN_PIPE) == errc::eof);
    CHECK(file_error(ERROR_FILE_NOT_FOUND) == errc::file_not_found);
    CHECK(file_error(ERROR_PATH_NOT_FOUND) == std::errc::no_such_file_or_directory);
    CHECK(file_error(ERROR_FILE_EXISTS) == errc::file_exists);
    CHECK(file_error(ERROR_ALREADY_EXISTS) == std::errc::file_exists);
    CHECK(file_error(ERROR_ACCESS_DENIED) == errc::access_denied);
    CHECK(file_error(ERROR_ACCESS_DENIED) == std::errc::permission_denied);
    CHECK(file_error(ERROR_SHARING_VIOLATION) == errc::file_in_use);
    CHECK(file_error(ERROR_LOCK_VIOLATION) == errc::file_in_use);
    CHECK(file_error(ERROR_DISK_FULL) == errc::disk_full);
    CHECK(file_error(ERROR_HANDLE_DISK_FULL) == std::errc::no_space_on_device);
    CHECK(file_error(ERROR_INVALID_NAME) == errc::invalid_argument);
    CHECK(file_error(ERROR_TOO_MANY_OPEN_FILES) == errc::no_resources);
    // What files share with sockets maps the same way.
    CHECK(file_error(ERROR_OPERATION_ABORTED) == errc::operation_aborted);
    CHECK(file_error(ERROR_NOT_ENOUGH_MEMORY) == errc::no_resources);
    // Unknown values pass through.
    CHECK(file_error(ERROR_CRC).category() == std::system_category());
}

TEST_CASE("a file operation's completion status maps as a file error", "[error_map]")
{
    using portico::detail::win::as_file_error;
    using portico::detail::win::completion_error;
    // What the shared operation code reports for a completion, refined for files.
    CHECK(as_file_error(completion_error(0xC0000011u)) == errc::eof);               // STATUS_END_OF_FILE
    CHECK(as_file_error(completion_error(0xC000014Bu)) == errc::eof);               // STATUS_PIPE_BROKEN
    CHECK(as_file_error(completion_error(0xC000007Fu)) == errc::disk_full);         // STATUS_DISK_FULL
    CHECK(as_file_error(completion_error(0xC0000043u)) == errc::file_in_use);       // STATUS_SHARING_VIOLATION
    CHECK(as_file_error(completion_error(0xC0000120u)) == errc::operation_aborted); // STATUS_CANCELLED
    CHECK_FALSE(as_file_error(completion_error(0)));
    // portico's own conditions are left as they are.
    CHECK(as_file_error(make_error_code(errc::connection_reset)) == errc::connection_reset);
}
