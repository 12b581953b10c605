// portico: Win32/Winsock errors of socket operations as portable conditions.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>

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
    default: return {static_cast<int>(error), std::system_category()};
    }
}

/// socket_error() of WSAGetLastError(): the error of the Winsock call that
/// just failed on this thread.
inline std::error_code last_socket_error() noexcept { return socket_error(static_cast<DWORD>(::WSAGetLastError())); }

} // namespace detail::win

PORTICO_NAMESPACE_END
