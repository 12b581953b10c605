// What the host the tests run on can do, probed once with the system's
// plain sockets (Winsock on Windows), not portico.
#pragma once

#include <portico/config.hpp>
#if PORTICO_BACKEND_IOCP
#include <portico/detail/win/windows.hpp>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#endif

#include <cstring>

namespace portico::test {

namespace detail {

#if !PORTICO_BACKEND_IOCP
// The names the probe below uses, for POSIX sockets.
using SOCKET = int;
inline constexpr SOCKET INVALID_SOCKET = -1;
using SOCKADDR = sockaddr;
using SOCKADDR_STORAGE = sockaddr_storage;
using SOCKADDR_IN = sockaddr_in;
using SOCKADDR_IN6 = sockaddr_in6;
using IPV6_MREQ = ipv6_mreq;
using IP_MREQ = ip_mreq;
inline int closesocket(SOCKET s) { return ::close(s); }
#endif

/// One multicast datagram over loopback with plain blocking Winsock: join
/// the group on the loopback interface, send to it from a second socket,
/// receive within a second. True if it arrived.
inline bool probe_multicast_loopback(bool ipv6)
{
    const int family = ipv6 ? AF_INET6 : AF_INET;
    SOCKET receiver = ::socket(family, SOCK_DGRAM, IPPROTO_UDP);
    SOCKET sender = ::socket(family, SOCK_DGRAM, IPPROTO_UDP);
    bool ok = receiver != INVALID_SOCKET && sender != INVALID_SOCKET;
    SOCKADDR_STORAGE group{};
#if PORTICO_BACKEND_IOCP
    int length = 0;
#else
    socklen_t length = 0;
#endif
    if (ok && ipv6) {
        auto& any = reinterpret_cast<SOCKADDR_IN6&>(group);
        any.sin6_family = AF_INET6;
        length = sizeof any;
        ok = ::bind(receiver, reinterpret_cast<SOCKADDR*>(&group), length) == 0 &&
             ::getsockname(receiver, reinterpret_cast<SOCKADDR*>(&group), &length) == 0;
        // ff02::1:7, joined on interface 1 (loopback), as the test does.
        const unsigned char address[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7};
        std::memcpy(&any.sin6_addr, address, sizeof address);
        IPV6_MREQ request{};
        std::memcpy(&request.ipv6mr_multiaddr, address, sizeof address);
        request.ipv6mr_interface = 1;
#if PORTICO_BACKEND_IOCP
        const DWORD index = 1;
#else
        const unsigned index = 1;
#endif
        ok = ok &&
             ::setsockopt(receiver, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, reinterpret_cast<const char*>(&request),
                          sizeof request) == 0 &&
             ::setsockopt(sender, IPPROTO_IPV6, IPV6_MULTICAST_IF, reinterpret_cast<const char*>(&index),
                          sizeof index) == 0;
    } else if (ok) {
        auto& any = reinterpret_cast<SOCKADDR_IN&>(group);
        any.sin_family = AF_INET;
        length = sizeof any;
        ok = ::bind(receiver, reinterpret_cast<SOCKADDR*>(&group), length) == 0 &&
             ::getsockname(receiver, reinterpret_cast<SOCKADDR*>(&group), &length) == 0;
        // 239.255.77.77, joined on 127.0.0.1, as the test does.
        any.sin_addr.s_addr = ::htonl(0xEFFF4D4D);
        IP_MREQ request{};
        request.imr_multiaddr = any.sin_addr;
        request.imr_interface.s_addr = ::htonl(INADDR_LOOPBACK);
        ok = ok &&
             ::setsockopt(receiver, IPPROTO_IP, IP_ADD_MEMBERSHIP, reinterpret_cast<const char*>(&request),
                          sizeof request) == 0 &&
             ::setsockopt(sender, IPPROTO_IP, IP_MULTICAST_IF, reinterpret_cast<const char*>(&request.imr_interface),
                          sizeof request.imr_interface) == 0;
    }
#if PORTICO_BACKEND_IOCP
    const DWORD timeout = 1000; // milliseconds
#else
    const timeval timeout{1, 0};
#endif
    char got[8] = {};
    ok =
        ok &&
        ::setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&timeout), sizeof timeout) == 0 &&
        ::sendto(sender, "probe", 5, 0, reinterpret_cast<SOCKADDR*>(&group), length) == 5 &&
        ::recv(receiver, got, sizeof got, 0) == 5;
    if (receiver != INVALID_SOCKET) closesocket(receiver);
    if (sender != INVALID_SOCKET) closesocket(sender);
    return ok;
}

} // namespace detail

/// Whether this host delivers multicast over its loopback interface (for
/// IPv6 or IPv4), found once per process by a probe with plain Winsock, not
/// portico: containers often leave loopback multicast off. A test skips on
/// this answer alone, so a regression in portico still fails it.
inline bool multicast_loopback_available(bool ipv6)
{
    static const bool v4 = detail::probe_multicast_loopback(false);
    static const bool v6 = detail::probe_multicast_loopback(true);
    return ipv6 ? v6 : v4;
}

} // namespace portico::test
