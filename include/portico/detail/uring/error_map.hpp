// portico: errno values of socket operations as portable conditions.
#pragma once

#include <portico/config.hpp>
#include <portico/error.hpp>

#include <cerrno>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// Maps the errno value of a socket call or of a completion (minus its
/// result) to a portico condition, as detail/win/error_map.hpp maps Winsock's:
/// each family of values that means one thing lands on one errc, and an
/// unknown value passes through in std::system_category.
inline std::error_code socket_error(int error) noexcept
{
    switch (error) {
    case 0: return {};
    // Cancelled (a stop, or the socket closed under it).
    case ECANCELED:
    case EINTR:
    case EBADF:
    case ENOTSOCK: return make_error_code(errc::operation_aborted);
    case ECONNRESET:
    case EPIPE: return make_error_code(errc::connection_reset);
    case ECONNABORTED: return make_error_code(errc::connection_aborted);
    case ECONNREFUSED: return make_error_code(errc::connection_refused);
    case ETIMEDOUT: return make_error_code(errc::timed_out);
    case ENOTCONN: return make_error_code(errc::not_connected);
    case ESHUTDOWN: return make_error_code(errc::bad_state);
    case EADDRINUSE: return make_error_code(errc::address_in_use);
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN: return make_error_code(errc::network_unreachable);
    case ENOMEM:
    case ENOBUFS:
    case EMFILE:
    case ENFILE: return make_error_code(errc::no_resources);
    case EINVAL:
    case EFAULT:
    case EAFNOSUPPORT:
    case EADDRNOTAVAIL: return make_error_code(errc::invalid_argument);
    case EMSGSIZE: return make_error_code(errc::datagram_truncated);
    default: return {error, std::system_category()};
    }
}

/// socket_error() of the calling thread's errno.
inline std::error_code last_socket_error() noexcept { return socket_error(errno); }

/// Maps the errno value of a file call or completion to a portico
/// condition, as detail/win/error_map.hpp's file_error maps Win32's.
inline std::error_code file_error(int error) noexcept
{
    switch (error) {
    case 0: return {};
    case EPIPE: return make_error_code(errc::eof);
    case ENOENT:
    case ENOTDIR: return make_error_code(errc::file_not_found);
    case EEXIST: return make_error_code(errc::file_exists);
    case EACCES:
    case EPERM:
    case EROFS: return make_error_code(errc::access_denied);
    case ETXTBSY:
    case EBUSY: return make_error_code(errc::file_in_use);
    case ENOSPC:
    case EDQUOT: return make_error_code(errc::disk_full);
    case ECANCELED:
    case EBADF: return make_error_code(errc::operation_aborted);
    case EINVAL:
    case EISDIR:
    case ENAMETOOLONG:
    case EFBIG: return make_error_code(errc::invalid_argument);
    case EMFILE:
    case ENFILE:
    case ENOMEM: return make_error_code(errc::no_resources);
    default: return {error, std::system_category()};
    }
}

/// An operation's error as a file error: a raw system value that
/// socket_error() passed through is mapped again by file_error() (the
/// completion of a file request went through the socket mapping).
inline std::error_code as_file_error(const std::error_code& ec) noexcept
{
    if (!ec || ec.category() != std::system_category()) return ec;
    return file_error(ec.value());
}

/// file_error() of the calling thread's errno.
inline std::error_code last_file_error() noexcept { return file_error(errno); }

} // namespace detail::uring

PORTICO_NAMESPACE_END
