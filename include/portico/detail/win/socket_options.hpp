// portico: socket options and names, shared by tcp_socket and udp_socket.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/net/endpoint.hpp>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// setsockopt of a plain value. Errors: bad_state on a closed socket, or
/// the mapped socket error.
template <class T>
io_result<void> set_option(SOCKET s, int level, int option, const T& value) noexcept
{
    if (s == INVALID_SOCKET) return {make_error_code(errc::bad_state)};
    if (::setsockopt(s, level, option, reinterpret_cast<const char*>(&value), sizeof value) != 0) {
        return {last_socket_error()};
    }
    return {};
}

/// getsockopt of an int-sized value (DWORD and BOOL options included).
inline io_result<int> get_int_option(SOCKET s, int level, int option) noexcept
{
    if (s == INVALID_SOCKET) return {make_error_code(errc::bad_state), 0};
    int value = 0;
    int length = sizeof value;
    if (::getsockopt(s, level, option, reinterpret_cast<char*>(&value), &length) != 0) {
        return {last_socket_error(), 0};
    }
    return {{}, value};
}

/// An on/off option read back as bool.
inline io_result<bool> get_flag_option(SOCKET s, int level, int option) noexcept
{
    auto [ec, value] = get_int_option(s, level, option);
    return {ec, value != 0};
}

/// getsockname (local) or getpeername (remote) as an endpoint. Errors:
/// bad_state on a closed socket, not_connected for the peer of an
/// unconnected socket.
template <class Getter>
io_result<endpoint> socket_name(SOCKET s, Getter getter) noexcept
{
    if (s == INVALID_SOCKET) return {make_error_code(errc::bad_state), {}};
    SOCKADDR_STORAGE storage{};
    int length = sizeof storage;
    if (getter(s, reinterpret_cast<SOCKADDR*>(&storage), &length) != 0) return {last_socket_error(), {}};
    auto e = from_sockaddr(reinterpret_cast<const SOCKADDR*>(&storage), length);
    if (!e) return {make_error_code(errc::invalid_argument), {}};
    return {{}, *e};
}

} // namespace detail::win

PORTICO_NAMESPACE_END
