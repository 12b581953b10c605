// portico: endpoints to and from the system's socket addresses (Linux).
#pragma once

#include <portico/config.hpp>
#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// Writes `e` into `out` as a sockaddr_in or sockaddr_in6; returns its length.
inline socklen_t to_sockaddr(const endpoint& e, sockaddr_storage& out) noexcept
{
    std::memset(&out, 0, sizeof out);
    if (e.is_v4()) {
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_port = htons(e.port());
        const auto bytes = e.addr().to_v4().to_bytes();
        std::memcpy(&in.sin_addr, bytes.data(), bytes.size());
        std::memcpy(&out, &in, sizeof in);
        return sizeof in;
    }
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(e.port());
    const auto v6 = e.addr().to_v6();
    const auto bytes = v6.to_bytes();
    std::memcpy(&in6.sin6_addr, bytes.data(), bytes.size());
    in6.sin6_scope_id = v6.scope_id();
    std::memcpy(&out, &in6, sizeof in6);
    return sizeof in6;
}

/// Reads an endpoint from a sockaddr_in or sockaddr_in6 of `length` bytes;
/// nothing for other families or a short length.
inline std::optional<endpoint> from_sockaddr(const sockaddr_storage& sa, socklen_t length) noexcept
{
    if (sa.ss_family == AF_INET && length >= sizeof(sockaddr_in)) {
        sockaddr_in in;
        std::memcpy(&in, &sa, sizeof in);
        address_v4::bytes_type bytes;
        std::memcpy(bytes.data(), &in.sin_addr, bytes.size());
        return endpoint{address_v4{bytes}, ntohs(in.sin_port)};
    }
    if (sa.ss_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
        sockaddr_in6 in6;
        std::memcpy(&in6, &sa, sizeof in6);
        address_v6::bytes_type bytes;
        std::memcpy(bytes.data(), &in6.sin6_addr, bytes.size());
        return endpoint{address_v6{bytes, in6.sin6_scope_id}, ntohs(in6.sin6_port)};
    }
    return std::nullopt;
}

} // namespace detail::uring

PORTICO_NAMESPACE_END
