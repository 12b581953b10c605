// portico: Win32/Winsock errors of socket and file operations as portable
// conditions.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>

#include <cstdint>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// Maps the error of a socket operation (receive, send, accept, connect,
/// disconnect, shutdown) to a portico condition. Raw values differ between
/// the call's return (WSAGetLastError) and the completion (a Win32 error from
/// the NTSTATUS), and between Windows and Wine: each family of values that
/// means one thing lands on one errc. An unknown value passes through in
/// std::system_category, never silently becomes something else.
inline std::error_code socket_error(DWORD error) noexcept
{
    switch (error) {
    case 0: return {};
    // Cancelled (CancelIoEx), or the socket was closed under the operation.
    case ERROR_OPERATION_ABORTED: // == WSA_OPERATION_ABORTED
    case WSAEINTR:
    case WSAENOTSOCK: return make_error_code(errc::operation_aborted);
    // The peer reset the connection. The completion reports the first two.
    case ERROR_NETNAME_DELETED:
    case WSAECONNRESET:
    case WSAENETRESET: return make_error_code(errc::connection_reset);
    case ERROR_CONNECTION_ABORTED:
    case WSAECONNABORTED: return make_error_code(errc::connection_aborted);
    case ERROR_CONNECTION_REFUSED:
    case WSAECONNREFUSED: return make_error_code(errc::connection_refused);
    case ERROR_SEM_TIMEOUT:
    case WSAETIMEDOUT: return make_error_code(errc::timed_out);
    case WSAENOTCONN: return make_error_code(errc::not_connected);
    case WSAESHUTDOWN: return make_error_code(errc::bad_state);
    case WSAEADDRINUSE: return make_error_code(errc::address_in_use);
    case ERROR_NETWORK_UNREACHABLE:
    case ERROR_HOST_UNREACHABLE:
    case WSAENETUNREACH:
    case WSAEHOSTUNREACH:
    case WSAENETDOWN: return make_error_code(errc::network_unreachable);
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
    case WSAENOBUFS:
    case WSAEMFILE: return make_error_code(errc::no_resources);
    case WSAEINVAL:
    case WSAEFAULT:
    case WSAEAFNOSUPPORT:
    case WSAEADDRNOTAVAIL: return make_error_code(errc::invalid_argument);
    // A receive only: a datagram larger than the buffer. (A send of a
    // datagram too large for UDP reports it too; udp_socket maps that one.)
    case WSAEMSGSIZE: return make_error_code(errc::datagram_truncated);
    default: return {static_cast<int>(error), std::system_category()};
    }
}

/// Maps the NTSTATUS a completion packet carries for a socket operation
/// (OVERLAPPED::Internal) to a portico condition, the way Winsock's own
/// WSAGetOverlappedResult would, without asking Winsock: that call takes the
/// socket handle, and once the socket is closed the same handle value may
/// already name a new socket (Windows reuses values at once; so does Wine),
/// whose state it would then report. Values not listed go through
/// RtlNtStatusToDosError and socket_error().
inline std::error_code completion_error(ULONG_PTR status) noexcept
{
    // NTSTATUS values from the SDK's ntstatus.h, spelled out: that header
    // clashes with <windows.h> unless included in a particular way.
    struct status_condition {
        std::uint32_t status;
        errc condition;
    };
    static constexpr status_condition known[] = {
        {0xC0000120u, errc::operation_aborted},   // STATUS_CANCELLED (Windows, closesocket or CancelIoEx)
        {0x8000000Au, errc::operation_aborted},   // STATUS_HANDLES_CLOSED (Wine, closesocket)
        {0xC0000128u, errc::operation_aborted},   // STATUS_FILE_CLOSED
        {0xC0000008u, errc::operation_aborted},   // STATUS_INVALID_HANDLE
        {0xC000013Bu, errc::operation_aborted},   // STATUS_LOCAL_DISCONNECT
        {0xC000013Cu, errc::connection_reset},    // STATUS_REMOTE_DISCONNECT
        {0xC000020Du, errc::connection_reset},    // STATUS_CONNECTION_RESET
        {0xC00000C9u, errc::connection_reset},    // STATUS_NETWORK_NAME_DELETED
        {0xC000023Fu, errc::connection_reset},    // STATUS_PORT_UNREACHABLE
        {0xC0000241u, errc::connection_aborted},  // STATUS_CONNECTION_ABORTED
        {0xC000020Cu, errc::connection_aborted},  // STATUS_CONNECTION_DISCONNECTED
        {0xC0000236u, errc::connection_refused},  // STATUS_CONNECTION_REFUSED
        {0xC00000B5u, errc::timed_out},           // STATUS_IO_TIMEOUT
        {0xC000023Du, errc::network_unreachable}, // STATUS_HOST_UNREACHABLE
        {0xC000023Cu, errc::network_unreachable}, // STATUS_NETWORK_UNREACHABLE
        {0xC000023Eu, errc::network_unreachable}, // STATUS_PROTOCOL_UNREACHABLE
        {0xC0000140u, errc::not_connected},       // STATUS_INVALID_CONNECTION
        {0xC000023Au, errc::not_connected},       // STATUS_CONNECTION_INVALID
        {0xC000020Au, errc::address_in_use},      // STATUS_ADDRESS_ALREADY_EXISTS
        {0xC000009Au, errc::no_resources},        // STATUS_INSUFFICIENT_RESOURCES
        {0xC0000017u, errc::no_resources},        // STATUS_NO_MEMORY
        {0x80000005u, errc::datagram_truncated},  // STATUS_BUFFER_OVERFLOW: a datagram larger than the buffer
    };
    if (status == 0) return {};
    for (const auto& k : known) {
        if (k.status == static_cast<std::uint32_t>(status)) return make_error_code(k.condition);
    }
    using to_dos_fn = ULONG(WINAPI*)(LONG);
    static const auto to_dos = reinterpret_cast<to_dos_fn>(
        reinterpret_cast<void*>(::GetProcAddress(::GetModuleHandleW(L"ntdll.dll"), "RtlNtStatusToDosError")));
    if (to_dos == nullptr) return {static_cast<int>(status), std::system_category()};
    return socket_error(to_dos(static_cast<LONG>(status)));
}

/// socket_error() of WSAGetLastError(): the error of the Winsock call that
/// just failed on this thread.
inline std::error_code last_socket_error() noexcept { return socket_error(static_cast<DWORD>(::WSAGetLastError())); }

/// Maps the error of a file call (CreateFileW, ReadFile, WriteFile, the size
/// and end-of-file calls) to a portico condition. End of file is eof however
/// it is reported: ERROR_HANDLE_EOF from a read at or past the end, and
/// ERROR_BROKEN_PIPE from a pipe whose writer is gone. Values the socket
/// family shares (cancelled, closed, out of memory) go through
/// socket_error(); an unknown value passes through in std::system_category.
inline std::error_code file_error(DWORD error) noexcept
{
    switch (error) {
    case 0: return {};
    case ERROR_HANDLE_EOF:
    case ERROR_BROKEN_PIPE: return make_error_code(errc::eof);
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_BAD_NETPATH:
    case ERROR_BAD_NET_NAME: return make_error_code(errc::file_not_found);
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS: return make_error_code(errc::file_exists);
    case ERROR_ACCESS_DENIED:
    case ERROR_WRITE_PROTECT: return make_error_code(errc::access_denied);
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
    case ERROR_USER_MAPPED_FILE: return make_error_code(errc::file_in_use);
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL: return make_error_code(errc::disk_full);
    // A handle closed under the call: as for a socket.
    case ERROR_INVALID_HANDLE: return make_error_code(errc::operation_aborted);
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_NAME:
    case ERROR_NEGATIVE_SEEK:
    case ERROR_DIRECTORY:
    case ERROR_FILENAME_EXCED_RANGE: return make_error_code(errc::invalid_argument);
    case ERROR_TOO_MANY_OPEN_FILES:
    case ERROR_NOT_ENOUGH_QUOTA:
    case ERROR_WORKING_SET_QUOTA:
    case ERROR_INVALID_USER_BUFFER: return make_error_code(errc::no_resources);
    default: return socket_error(error);
    }
}

/// The error an overlapped file operation ended with, as file_error() maps
/// it. Such operations share socket operations' start/cancel/complete code
/// (socket_op), which maps their result the socket way: what that mapping
/// knows (cancelled, closed, out of memory) means the same for a file, and
/// what it does not know it passes through in std::system_category, raw,
/// for this function to map.
inline std::error_code as_file_error(const std::error_code& ec) noexcept
{
    if (!ec || ec.category() != std::system_category()) return ec;
    return file_error(static_cast<DWORD>(ec.value()));
}

/// file_error() of GetLastError(): the error of the file call that just
/// failed on this thread.
inline std::error_code last_file_error() noexcept { return file_error(::GetLastError()); }

} // namespace detail::win

PORTICO_NAMESPACE_END
