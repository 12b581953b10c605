// portico: the socket options portico's sockets set, named portably; each
// backend maps them to its system's level and name.
#pragma once

#include <portico/config.hpp>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// An integer or on/off socket option. The v4/v6 pairs are one option to the
/// user (udp_socket picks by the socket's family) but two to the system.
enum class socket_option : unsigned char {
    no_delay,            ///< TCP_NODELAY
    keep_alive,          ///< SO_KEEPALIVE
    receive_buffer_size, ///< SO_RCVBUF
    send_buffer_size,    ///< SO_SNDBUF
    broadcast,           ///< SO_BROADCAST
    reuse_address,       ///< SO_REUSEADDR
    exclusive_address,   ///< SO_EXCLUSIVEADDRUSE (Windows); what Linux does by default
    multicast_loop_v4,   ///< IP_MULTICAST_LOOP
    multicast_loop_v6,   ///< IPV6_MULTICAST_LOOP
    multicast_hops_v4,   ///< IP_MULTICAST_TTL
    multicast_hops_v6,   ///< IPV6_MULTICAST_HOPS
};

/// What a socket is for; the backend picks the family from the endpoint.
enum class socket_kind : unsigned char { stream, datagram };

} // namespace detail

PORTICO_NAMESPACE_END
