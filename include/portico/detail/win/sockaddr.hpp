// portico: converting endpoints to and from Winsock socket addresses.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/net/endpoint.hpp>

#include <cstring>
#include <optional>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// Writes `e` into `out` as a sockaddr_in or sockaddr_in6; returns its length.
inline int to_sockaddr(const endpoint& e, SOCKADDR_STORAGE& out) noexcept
{
    std::memset(&out, 0, sizeof out);
    if (e.is_v4()) {
        auto& sa = reinterpret_cast<SOCKADDR_IN&>(out);
        sa.sin_family = AF_INET;
        sa.sin_port = ::htons(e.port());
        const auto bytes = e.addr().to_v4().to_bytes();
        std::memcpy(&sa.sin_addr, bytes.data(), bytes.size());
        return static_cast<int>(sizeof(SOCKADDR_IN));
    }
    auto& sa = reinterpret_cast<SOCKADDR_IN6&>(out);
    const auto v6 = e.addr().to_v6();
    sa.sin6_family = AF_INET6;
    sa.sin6_port = ::htons(e.port());
    const auto bytes = v6.to_bytes();
    std::memcpy(&sa.sin6_addr, bytes.data(), bytes.size());
    sa.sin6_scope_id = v6.scope_id();
    return static_cast<int>(sizeof(SOCKADDR_IN6));
}

/// Reads an endpoint from a sockaddr_in or sockaddr_in6 of `length` bytes;
/// nothing for other families or a short length.
inline std::optional<endpoint> from_sockaddr(const SOCKADDR* sa, int length) noexcept
{
    if (sa == nullptr) return std::nullopt;
    if (sa->sa_family == AF_INET && length >= static_cast<int>(sizeof(SOCKADDR_IN))) {
        SOCKADDR_IN in;
        std::memcpy(&in, sa, sizeof in);
        address_v4::bytes_type bytes;
        std::memcpy(bytes.data(), &in.sin_addr, bytes.size());
        return endpoint{address_v4{bytes}, ::ntohs(in.sin_port)};
    }
    if (sa->sa_family == AF_INET6 && length >= static_cast<int>(sizeof(SOCKADDR_IN6))) {
        SOCKADDR_IN6 in6;
        std::memcpy(&in6, sa, sizeof in6);
        address_v6::bytes_type bytes;
        std::memcpy(bytes.data(), &in6.sin6_addr, bytes.size());
        return endpoint{address_v6{bytes, in6.sin6_scope_id}, ::ntohs(in6.sin6_port)};
    }
    return std::nullopt;
}

} // namespace detail::win

PORTICO_NAMESPACE_END
