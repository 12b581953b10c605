// portico: socket_handle — an owned Winsock socket and the synchronous calls
// on it (open, associate, bind, options, names, shutdown, close).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/socket_option.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>
#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>

#include <cstdint>
#include <cstring>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// What a socket operation needs of its socket: where completions arrive,
/// the handle, and whether an immediate success queues a packet.
struct socket_ref {
    scheduler* sched = nullptr;
    SOCKET handle = INVALID_SOCKET;
    /// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set: a call that succeeds at
    /// once queues no packet.
    bool skips_on_success = false;
};

/// An owned socket: closed by the destructor, moved, never copied. Every
/// call on a closed handle reports bad_state. Errors are portable
/// conditions (socket_error). Thread safety: as the owning portico socket.
class socket_handle {
public:
    socket_handle() noexcept = default;
    /// Takes ownership of `s` (not yet associated with any port).
    explicit socket_handle(SOCKET s) noexcept : s_(s) {}
    socket_handle(const socket_handle&) = delete;
    socket_handle& operator=(const socket_handle&) = delete;
    socket_handle(socket_handle&& other) noexcept
        : s_(std::exchange(other.s_, INVALID_SOCKET)), skips_(std::exchange(other.skips_, false))
    {}
    socket_handle& operator=(socket_handle&& other) noexcept
    {
        if (this != &other) {
            close();
            s_ = std::exchange(other.s_, INVALID_SOCKET);
            skips_ = std::exchange(other.skips_, false);
        }
        return *this;
    }
    ~socket_handle() { close(); }

    /// Creates an overlapped socket of `kind` for IPv4 or IPv6, closing any
    /// socket held before. A datagram socket ignores ICMP port unreachable
    /// (SIO_UDP_CONNRESET off): otherwise an earlier send_to to a dead peer
    /// fails the next receive with a reset, breaking a server's loop.
    /// Errors: no_resources, invalid_argument.
    std::error_code open(bool v6, socket_kind kind) noexcept
    {
        const bool stream = kind == socket_kind::stream;
        SOCKET s = ::WSASocketW(v6 ? AF_INET6 : AF_INET, stream ? SOCK_STREAM : SOCK_DGRAM,
                                stream ? IPPROTO_TCP : IPPROTO_UDP, nullptr, 0, WSA_FLAG_OVERLAPPED);
        if (s == INVALID_SOCKET) return last_socket_error();
        if (!stream) {
            BOOL report = FALSE;
            DWORD returned = 0;
            ::WSAIoctl(s, SIO_UDP_CONNRESET, &report, sizeof report, nullptr, 0, &returned, nullptr, nullptr);
        }
        *this = socket_handle(s);
        return {};
    }

    /// Associates the socket with `sched`'s port; with `skip_on_success`,
    /// also asks that immediate successes queue no packet (where safe, see
    /// scheduler::associate_socket). On error the socket is closed.
    std::error_code associate(scheduler& sched, bool skip_on_success) noexcept
    {
        bool skips = false;
        if (auto ec = sched.associate_socket(s_, skip_on_success, skips)) {
            close();
            return ec;
        }
        skips_ = skips;
        return {};
    }

    [[nodiscard]] bool is_open() const noexcept { return s_ != INVALID_SOCKET; }
    [[nodiscard]] SOCKET get() const noexcept { return s_; }
    [[nodiscard]] std::uintptr_t native() const noexcept { return static_cast<std::uintptr_t>(s_); }
    [[nodiscard]] socket_ref ref(scheduler& sched) const noexcept { return {&sched, s_, skips_}; }

    /// Gives up ownership without closing.
    SOCKET release() noexcept
    {
        skips_ = false;
        return std::exchange(s_, INVALID_SOCKET);
    }

    /// Closes gracefully: queued data still goes out, then FIN. Pending
    /// operations complete with operation_aborted. Idempotent.
    void close() noexcept
    {
        if (is_open()) ::closesocket(release());
    }

    /// Closes with linger 0: the peer sees a reset, queued data is dropped.
    void close_abortive() noexcept
    {
        if (!is_open()) return;
        (void)set_linger(true, 0);
        close();
    }

    /// Asks every pending operation on the socket to complete with
    /// operation_aborted (CancelIoEx). The socket stays open.
    void cancel(scheduler& sched) const noexcept
    {
        if (!is_open()) return;
        sched.count(counter::cancel_calls);
        ::CancelIoEx(reinterpret_cast<HANDLE>(s_), nullptr);
    }

    /// Sends FIN after the queued data.
    [[nodiscard]] std::error_code shutdown_send() const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        return ::shutdown(s_, SD_SEND) == 0 ? std::error_code{} : last_socket_error();
    }

    [[nodiscard]] std::error_code bind(const endpoint& local) const noexcept { return call_with(local, &::bind); }

    /// Binds to the wildcard address of the family, port 0, as ConnectEx
    /// requires; a socket the user bound already is left as it is.
    [[nodiscard]] std::error_code bind_for_connect(bool v6) const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        SOCKADDR_STORAGE storage{};
        const int length = to_sockaddr(v6 ? endpoint{address_v6::any(), 0} : endpoint{address_v4::any(), 0}, storage);
        if (::bind(s_, reinterpret_cast<const SOCKADDR*>(&storage), length) == 0) return {};
        const auto error = static_cast<DWORD>(::WSAGetLastError());
        return error == WSAEINVAL ? std::error_code{} : socket_error(error); // WSAEINVAL: bound already
    }

    /// listen(); `backlog` below 0 or above SOMAXCONN asks for the maximum.
    [[nodiscard]] std::error_code listen(int backlog) const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        const int n = backlog < 0 || backlog >= SOMAXCONN ? SOMAXCONN : backlog;
        return ::listen(s_, n) == 0 ? std::error_code{} : last_socket_error();
    }

    /// connect() of a datagram socket: sets its default peer, sends nothing.
    [[nodiscard]] std::error_code connect(const endpoint& remote) const noexcept
    {
        return call_with(remote, &::connect);
    }

    io_result<void> set_option(socket_option option, int value) const noexcept
    {
        const auto [level, name] = option_name(option);
        return set_raw(level, name, value);
    }

    [[nodiscard]] io_result<int> option(socket_option option) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state), 0};
        const auto [level, name] = option_name(option);
        int value = 0;
        int length = sizeof value;
        if (::getsockopt(s_, level, name, reinterpret_cast<char*>(&value), &length) != 0) {
            return {last_socket_error(), 0};
        }
        return {{}, value};
    }

    /// SIO_KEEPALIVE_VALS: keep-alive on, the first probe after `idle_ms`
    /// without traffic, then one every `interval_ms` (how many before the
    /// connection fails is the system's: 10 on Windows). Errors: bad_state
    /// if closed, otherwise the system's.
    io_result<void> set_keep_alive_timing(unsigned long idle_ms, unsigned long interval_ms) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        tcp_keepalive values{1, idle_ms, interval_ms};
        DWORD returned = 0;
        if (::WSAIoctl(s_, SIO_KEEPALIVE_VALS, &values, sizeof values, nullptr, 0, &returned, nullptr, nullptr) != 0) {
            return {last_socket_error()};
        }
        return {};
    }

    io_result<void> set_linger(bool on, int seconds) const noexcept
    {
        const LINGER linger{static_cast<u_short>(on ? 1 : 0), static_cast<u_short>(seconds)};
        return set_raw(SOL_SOCKET, SO_LINGER, linger);
    }

    /// Joins (`join`) or leaves a multicast group: IPv6 on the interface with
    /// index `index`, IPv4 on the interface with address `iface`.
    io_result<void> set_membership(const address& group, unsigned index, const address_v4& iface,
                                   bool join) const noexcept
    {
        if (group.is_v6()) {
            IPV6_MREQ request{};
            const auto bytes = group.to_v6().to_bytes();
            std::memcpy(&request.ipv6mr_multiaddr, bytes.data(), bytes.size());
            request.ipv6mr_interface = index;
            return set_raw(IPPROTO_IPV6, join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP, request);
        }
        IP_MREQ request{};
        const auto group_bytes = group.to_v4().to_bytes();
        const auto iface_bytes = iface.to_bytes();
        std::memcpy(&request.imr_multiaddr, group_bytes.data(), group_bytes.size());
        std::memcpy(&request.imr_interface, iface_bytes.data(), iface_bytes.size());
        return set_raw(IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, request);
    }

    /// The interface IPv4 multicast datagrams leave by.
    io_result<void> set_multicast_interface(const address_v4& iface) const noexcept
    {
        IN_ADDR a{};
        const auto bytes = iface.to_bytes();
        std::memcpy(&a, bytes.data(), sizeof a);
        return set_raw(IPPROTO_IP, IP_MULTICAST_IF, a);
    }

    /// The interface IPv6 multicast datagrams leave by.
    io_result<void> set_multicast_interface(unsigned index) const noexcept
    {
        return set_raw(IPPROTO_IPV6, IPV6_MULTICAST_IF, static_cast<DWORD>(index));
    }

    /// getsockname as an endpoint. Errors: bad_state, invalid_argument
    /// (not bound).
    [[nodiscard]] io_result<endpoint> local_endpoint() const noexcept { return name_of(&::getsockname); }
    /// getpeername as an endpoint. Errors: bad_state, not_connected.
    [[nodiscard]] io_result<endpoint> remote_endpoint() const noexcept { return name_of(&::getpeername); }

private:
    struct level_and_name {
        int level;
        int name;
    };

    static level_and_name option_name(socket_option option) noexcept
    {
        switch (option) {
        case socket_option::no_delay: return {IPPROTO_TCP, TCP_NODELAY};
        case socket_option::keep_alive: return {SOL_SOCKET, SO_KEEPALIVE};
        case socket_option::receive_buffer_size: return {SOL_SOCKET, SO_RCVBUF};
        case socket_option::send_buffer_size: return {SOL_SOCKET, SO_SNDBUF};
        case socket_option::broadcast: return {SOL_SOCKET, SO_BROADCAST};
        case socket_option::reuse_address: return {SOL_SOCKET, SO_REUSEADDR};
        case socket_option::exclusive_address:
            return {SOL_SOCKET, static_cast<int>(SO_EXCLUSIVEADDRUSE)}; // ~SO_REUSEADDR: unsigned in some headers
        case socket_option::multicast_loop_v4: return {IPPROTO_IP, IP_MULTICAST_LOOP};
        case socket_option::multicast_loop_v6: return {IPPROTO_IPV6, IPV6_MULTICAST_LOOP};
        case socket_option::multicast_hops_v4: return {IPPROTO_IP, IP_MULTICAST_TTL};
        case socket_option::multicast_hops_v6: return {IPPROTO_IPV6, IPV6_MULTICAST_HOPS};
        }
        return {SOL_SOCKET, 0};
    }

    /// bind or connect (`call`) with `e` as a socket address.
    template <class Call>
    std::error_code call_with(const endpoint& e, Call call) const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        SOCKADDR_STORAGE storage{};
        const int length = to_sockaddr(e, storage);
        if (call(s_, reinterpret_cast<const SOCKADDR*>(&storage), length) != 0) return last_socket_error();
        return {};
    }

    template <class T>
    io_result<void> set_raw(int level, int name, const T& value) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        if (::setsockopt(s_, level, name, reinterpret_cast<const char*>(&value), sizeof value) != 0) {
            return {last_socket_error()};
        }
        return {};
    }

    template <class Getter>
    io_result<endpoint> name_of(Getter getter) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state), {}};
        SOCKADDR_STORAGE storage{};
        int length = sizeof storage;
        if (getter(s_, reinterpret_cast<SOCKADDR*>(&storage), &length) != 0) return {last_socket_error(), {}};
        auto e = from_sockaddr(reinterpret_cast<const SOCKADDR*>(&storage), length);
        if (!e) return {make_error_code(errc::invalid_argument), {}};
        return {{}, *e};
    }

    SOCKET s_ = INVALID_SOCKET;
    bool skips_ = false;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
