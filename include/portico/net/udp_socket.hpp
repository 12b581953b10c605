// portico: udp_socket — datagrams on an io_context: send_to / recv_from,
// connected mode, broadcast and multicast.
#pragma once

#include <portico/config.hpp>

#if PORTICO_BACKEND_NONE
#error "portico: udp_socket needs an I/O backend; this platform has none yet"
#endif

#include <portico/buffer.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/socket_op.hpp>
#include <portico/detail/win/socket_options.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/detail/win/wsabuf.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// The largest datagram UDP over IPv4 carries: 65,535 minus the IP and UDP
/// headers (20 + 8 bytes).
inline constexpr std::size_t max_datagram_size = 65535 - 28;

/// Awaiter of udp_socket::send_to() and send(): one WSASendTo gathering up
/// to 64 buffers into one datagram. Yields io_result<size_t>, the bytes sent
/// (a datagram goes whole or not at all). An empty datagram is sent too.
/// Errors: invalid_argument for a datagram larger than UDP allows, not
/// connected for send() on an unconnected socket, operation_aborted...
/// Never allocates.
class [[nodiscard]] send_to_op : public detail::win::socket_op<send_to_op> {
public:
    /// Made by udp_socket::send_to() (`to` is the destination) and send()
    /// (`to` is null: the connected peer). The memory of `buffers` must
    /// outlive the operation.
    template <class Sequence>
    send_to_op(const detail::win::socket_ref& s, const Sequence& buffers, const endpoint* to) noexcept : socket_op(s)
    {
        count_ = detail::win::fill_wsabufs<const_buffer>(buffers, wsabufs_, total_);
        if (to != nullptr) length_ = detail::win::to_sockaddr(*to, address_);
    }

    /// Awaiter protocol, called by co_await once the inherited await_ready and
    /// await_suspend have sent the datagram: yields the io_result<size_t>
    /// described above.
    io_result<std::size_t> await_resume() const noexcept
    {
        // For a send, "message too large" is the caller's datagram, not a
        // truncated receive.
        if (error_ == errc::datagram_truncated) return {make_error_code(errc::invalid_argument), 0};
        return {error_, bytes_};
    }

private:
    friend class detail::win::socket_op<send_to_op>;

    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(detail::counter::send_calls);
        // An empty datagram still needs one (empty) buffer to describe it.
        DWORD count = static_cast<DWORD>(count_);
        if (count == 0) {
            wsabufs_[0] = WSABUF{0, nullptr};
            count = 1;
        }
        const auto* to = length_ == 0 ? nullptr : reinterpret_cast<const SOCKADDR*>(&address_);
        // NOTE: see read_some_op::start.
        if (::WSASendTo(socket_.handle, wsabufs_.data(), count, &bytes, 0, to, length_, this, nullptr) == 0) return 0;
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::array<WSABUF, detail::win::max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
    std::size_t total_ = 0;
    SOCKADDR_STORAGE address_{};
    int length_ = 0;
};

/// Awaiter of udp_socket::recv_from() and recv(): one WSARecvFrom scattering
/// one datagram into up to 64 buffers. Yields io_result<size_t>, the bytes
/// received; an empty datagram is 0 bytes and no error (UDP has no end of
/// stream). A datagram larger than the buffers: datagram_truncated, with the
/// buffers holding its start and the byte count saying how much; the next
/// receive gets the next datagram. The sender's endpoint is stored where
/// recv_from() was told, also with datagram_truncated. Never allocates.
class [[nodiscard]] recv_from_op : public detail::win::socket_op<recv_from_op> {
public:
    /// Made by udp_socket::recv_from() (`from` receives the sender) and recv()
    /// (`from` is null). The memory of `buffers` must outlive the operation.
    template <class Sequence>
    recv_from_op(const detail::win::socket_ref& s, const Sequence& buffers, endpoint* from) noexcept
        : socket_op(s), from_(from)
    {
        count_ = detail::win::fill_wsabufs<mutable_buffer>(buffers, wsabufs_, total_);
    }

    /// Awaiter protocol, called by co_await once the inherited await_ready and
    /// await_suspend have received a datagram: stores the sender (on success
    /// and on datagram_truncated) and yields the io_result<size_t> described
    /// above.
    io_result<std::size_t> await_resume() const noexcept
    {
        if ((!error_ || error_ == errc::datagram_truncated) && from_ != nullptr) {
            if (auto e = detail::win::from_sockaddr(reinterpret_cast<const SOCKADDR*>(&address_), address_length_)) {
                *from_ = *e;
            }
        }
        return {error_, bytes_};
    }

private:
    friend class detail::win::socket_op<recv_from_op>;

    static constexpr bool message_size_is_a_warning = true;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(detail::counter::recv_calls);
        DWORD count = static_cast<DWORD>(count_);
        if (count == 0) {
            wsabufs_[0] = WSABUF{0, nullptr};
            count = 1;
        }
        flags_ = 0;
        address_length_ = sizeof address_;
        // NOTE: the address and its length are written by the kernel when
        // the datagram arrives, possibly on another thread: they live in
        // this op (in the awaiting frame) until it completes.
        if (::WSARecvFrom(socket_.handle, wsabufs_.data(), count, &bytes, &flags_,
                          reinterpret_cast<SOCKADDR*>(&address_), &address_length_, this, nullptr) == 0) {
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::array<WSABUF, detail::win::max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
    std::size_t total_ = 0;
    DWORD flags_ = 0;
    SOCKADDR_STORAGE address_{};
    INT address_length_ = 0;
    endpoint* from_;
};

/// A UDP socket. Move-only; closing or destroying it aborts its pending
/// operations (operation_aborted).
///
/// An ICMP "port unreachable" answering an earlier send never fails a
/// receive (SIO_UDP_CONNRESET is turned off when the socket opens), so one
/// dead peer cannot break a server's receive loop.
///
/// Thread safety: one receive and any number of sends may be pending at
/// once, from any threads; other members must not race with each other or
/// with starting operations.
class udp_socket {
public:
    /// The platform's socket handle as an integer (a SOCKET on Windows).
    using native_handle_type = std::uintptr_t;

    /// A socket not yet open; open() or bind() opens it.
    explicit udp_socket(io_context& ctx) noexcept : ctx_(&ctx) {}

    /// Takes over the socket of `other`, which is left closed (is_open() is
    /// false) on the same context.
    udp_socket(udp_socket&& other) noexcept
        : ctx_(other.ctx_), handle_(std::exchange(other.handle_, INVALID_SOCKET)), skips_(other.skips_),
          ipv6_(other.ipv6_)
    {}
    /// Closes this socket (as close() does) and takes over the socket of
    /// `other`, which is left closed.
    udp_socket& operator=(udp_socket&& other) noexcept
    {
        if (this != &other) {
            close();
            ctx_ = other.ctx_;
            handle_ = std::exchange(other.handle_, INVALID_SOCKET);
            skips_ = other.skips_;
            ipv6_ = other.ipv6_;
        }
        return *this;
    }
    ~udp_socket() { close(); }

    /// True between open() (or bind()) and close().
    [[nodiscard]] bool is_open() const noexcept { return handle_ != INVALID_SOCKET; }
    /// True for an IPv6 socket.
    [[nodiscard]] bool is_v6() const noexcept { return ipv6_; }

    /// Creates the socket for IPv4 or IPv6 and associates it with the
    /// context. Errors: no_resources, invalid_argument; bad_state if open.
    io_result<void> open(bool ipv6)
    {
        if (is_open()) return {make_error_code(errc::bad_state)};
        SOCKET s = ::WSASocketW(ipv6 ? AF_INET6 : AF_INET, SOCK_DGRAM, IPPROTO_UDP, nullptr, 0, WSA_FLAG_OVERLAPPED);
        if (s == INVALID_SOCKET) return {detail::win::last_socket_error()};
        // Without this, an ICMP port unreachable from an earlier send_to
        // fails the next receive with a connection reset (Windows only).
        BOOL report = FALSE;
        DWORD returned = 0;
        ::WSAIoctl(s, SIO_UDP_CONNRESET, &report, sizeof report, nullptr, 0, &returned, nullptr, nullptr);
        try {
            skips_ = ctx_->scheduler_impl().associate_socket(s, ctx_->scheduler_impl().skip_completion_on_success());
        } catch (const std::system_error& e) {
            ::closesocket(s);
            return {e.code()};
        }
        handle_ = s;
        ipv6_ = ipv6;
        return {};
    }

    /// Binds to `local` (port 0: the system chooses), opening the socket for
    /// its family first if needed. With `reuse_address`, other sockets may
    /// bind the same port (SO_REUSEADDR: several receivers of one multicast
    /// group or broadcast port on a machine). Errors: address_in_use,
    /// invalid_argument (not a local address), bad_state.
    io_result<void> bind(const endpoint& local, bool reuse_address = false)
    {
        if (!is_open()) {
            if (auto [ec] = open(local.is_v6()); ec) return {ec};
        }
        if (reuse_address) {
            if (auto [ec] = set_option(SOL_SOCKET, SO_REUSEADDR, 1); ec) return {ec};
        }
        SOCKADDR_STORAGE storage{};
        const int length = detail::win::to_sockaddr(local, storage);
        if (::bind(handle_, reinterpret_cast<const SOCKADDR*>(&storage), length) != 0) {
            return {detail::win::last_socket_error()};
        }
        return {};
    }

    /// Sends one datagram (the buffers gathered) to `to`. See send_to_op.
    /// An unbound socket is bound to any address and port by the system.
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] send_to_op send_to(const Sequence& buffers, const endpoint& to) noexcept
    {
        return send_to_op{ref(), buffers, &to};
    }

    /// Receives one datagram into the buffers and stores its sender in
    /// `from`, which must stay valid until the operation completes. See
    /// recv_from_op. The socket must be bound (or have sent).
    template <class Sequence>
        requires mutable_buffer_sequence<Sequence>
    [[nodiscard]] recv_from_op recv_from(const Sequence& buffers, endpoint& from) noexcept
    {
        return recv_from_op{ref(), buffers, &from};
    }

    /// Connected mode: sets the default destination and accepts datagrams
    /// from `remote` only. Completes at once (nothing is sent). Opens the
    /// socket for the remote's family if needed. Errors: invalid_argument,
    /// network_unreachable, bad_state.
    io_result<void> connect(const endpoint& remote)
    {
        if (!is_open()) {
            if (auto [ec] = open(remote.is_v6()); ec) return {ec};
        }
        SOCKADDR_STORAGE storage{};
        const int length = detail::win::to_sockaddr(remote, storage);
        if (::connect(handle_, reinterpret_cast<const SOCKADDR*>(&storage), length) != 0) {
            return {detail::win::last_socket_error()};
        }
        return {};
    }

    /// Connected mode: sends one datagram to the connected peer.
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] send_to_op send(const Sequence& buffers) noexcept
    {
        return send_to_op{ref(), buffers, nullptr};
    }

    /// Connected mode: receives one datagram from the connected peer.
    template <class Sequence>
        requires mutable_buffer_sequence<Sequence>
    [[nodiscard]] recv_from_op recv(const Sequence& buffers) noexcept
    {
        return recv_from_op{ref(), buffers, nullptr};
    }

    /// SO_BROADCAST: allows sends to a broadcast address (255.255.255.255 or
    /// a subnet's). Off by default.
    io_result<void> set_broadcast(bool on) noexcept { return set_option(SOL_SOCKET, SO_BROADCAST, on ? 1 : 0); }
    /// Reads SO_BROADCAST. Errors: bad_state if not open; otherwise the
    /// system's.
    [[nodiscard]] io_result<bool> broadcast() const noexcept
    {
        return detail::win::get_flag_option(handle_, SOL_SOCKET, SO_BROADCAST);
    }

    /// Joins the multicast `group` on the default interface (IPv4) or on the
    /// interface with index `interface_index` (IPv6; 0 = default). The
    /// group's family must be the socket's. Errors: invalid_argument (not a
    /// multicast address, wrong family), address_in_use (already joined).
    io_result<void> join_group(const address& group, unsigned interface_index = 0) noexcept
    {
        return membership(group, interface_index, true, {});
    }
    /// Joins an IPv4 multicast `group` on the interface with address `interface_address`.
    io_result<void> join_group(const address_v4& group, const address_v4& interface_address) noexcept
    {
        return membership(address{group}, 0, true, interface_address);
    }
    /// Leaves a group joined with join_group (same arguments).
    io_result<void> leave_group(const address& group, unsigned interface_index = 0) noexcept
    {
        return membership(group, interface_index, false, {});
    }
    /// Leaves an IPv4 group joined with join_group(group, interface_address)
    /// (same arguments).
    io_result<void> leave_group(const address_v4& group, const address_v4& interface_address) noexcept
    {
        return membership(address{group}, 0, false, interface_address);
    }

    /// Whether this host's own multicast sends are looped back to its
    /// receivers (IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP). On by default.
    io_result<void> set_multicast_loopback(bool on) noexcept
    {
        return ipv6_ ? set_option(IPPROTO_IPV6, IPV6_MULTICAST_LOOP, on ? 1 : 0)
                     : set_option(IPPROTO_IP, IP_MULTICAST_LOOP, on ? 1 : 0);
    }
    /// Reads the multicast loopback option of the socket's family. Errors:
    /// bad_state if not open; otherwise the system's.
    [[nodiscard]] io_result<bool> multicast_loopback() const noexcept
    {
        return ipv6_ ? detail::win::get_flag_option(handle_, IPPROTO_IPV6, IPV6_MULTICAST_LOOP)
                     : detail::win::get_flag_option(handle_, IPPROTO_IP, IP_MULTICAST_LOOP);
    }

    /// How many routers a multicast datagram may cross (IPv4 TTL, IPv6 hop
    /// limit), 0-255. Default 1: the local network.
    io_result<void> set_multicast_hops(int hops) noexcept
    {
        if (hops < 0 || hops > 255) return {make_error_code(errc::invalid_argument)};
        return ipv6_ ? set_option(IPPROTO_IPV6, IPV6_MULTICAST_HOPS, hops)
                     : set_option(IPPROTO_IP, IP_MULTICAST_TTL, hops);
    }
    /// Reads the multicast hop limit (IPv4 TTL, IPv6 hop limit). Errors:
    /// bad_state if not open; otherwise the system's.
    [[nodiscard]] io_result<int> multicast_hops() const noexcept
    {
        return ipv6_ ? detail::win::get_int_option(handle_, IPPROTO_IPV6, IPV6_MULTICAST_HOPS)
                     : detail::win::get_int_option(handle_, IPPROTO_IP, IP_MULTICAST_TTL);
    }

    /// The interface multicast datagrams leave by: an IPv4 interface address.
    io_result<void> set_multicast_interface(const address_v4& interface_address) noexcept
    {
        if (ipv6_) return {make_error_code(errc::invalid_argument)};
        IN_ADDR a{};
        const auto bytes = interface_address.to_bytes();
        std::memcpy(&a, bytes.data(), sizeof a);
        return detail::win::set_option(handle_, IPPROTO_IP, IP_MULTICAST_IF, a);
    }
    /// The interface multicast datagrams leave by: an IPv6 interface index.
    io_result<void> set_multicast_interface(unsigned interface_index) noexcept
    {
        if (!ipv6_) return {make_error_code(errc::invalid_argument)};
        return detail::win::set_option(handle_, IPPROTO_IPV6, IPV6_MULTICAST_IF, static_cast<DWORD>(interface_index));
    }

    /// Sets SO_RCVBUF, in bytes. Errors: bad_state if not open; otherwise
    /// the system's.
    io_result<void> set_receive_buffer_size(int bytes) noexcept { return set_option(SOL_SOCKET, SO_RCVBUF, bytes); }
    /// Reads SO_RCVBUF, in bytes. Errors: bad_state if not open; otherwise the
    /// system's.
    [[nodiscard]] io_result<int> receive_buffer_size() const noexcept
    {
        return detail::win::get_int_option(handle_, SOL_SOCKET, SO_RCVBUF);
    }
    /// Sets SO_SNDBUF, in bytes. Errors: bad_state if not open; otherwise the
    /// system's.
    io_result<void> set_send_buffer_size(int bytes) noexcept { return set_option(SOL_SOCKET, SO_SNDBUF, bytes); }
    /// Reads SO_SNDBUF, in bytes. Errors: bad_state if not open; otherwise the
    /// system's.
    [[nodiscard]] io_result<int> send_buffer_size() const noexcept
    {
        return detail::win::get_int_option(handle_, SOL_SOCKET, SO_SNDBUF);
    }

    /// The bound endpoint (after bind() or a first send). Errors: bad_state
    /// if not open, invalid_argument (not bound yet).
    [[nodiscard]] io_result<endpoint> local_endpoint() const noexcept
    {
        return detail::win::socket_name(handle_, &::getsockname);
    }
    /// The connected peer (connected mode). Errors: bad_state if not open,
    /// not_connected without connect().
    [[nodiscard]] io_result<endpoint> remote_endpoint() const noexcept
    {
        return detail::win::socket_name(handle_, &::getpeername);
    }

    /// Asks every pending operation to finish with operation_aborted. The
    /// socket stays open.
    void cancel() noexcept
    {
        if (!is_open()) return;
        ctx_->scheduler_impl().count(detail::counter::cancel_calls);
        ::CancelIoEx(reinterpret_cast<HANDLE>(handle_), nullptr);
    }

    /// Closes the socket; pending operations resume with operation_aborted.
    /// Idempotent.
    void close() noexcept
    {
        if (is_open()) ::closesocket(std::exchange(handle_, INVALID_SOCKET));
    }

    /// The SOCKET, as an integer.
    [[nodiscard]] native_handle_type native_handle() const noexcept { return static_cast<native_handle_type>(handle_); }
    /// The context the socket's operations complete on.
    [[nodiscard]] io_context& context() const noexcept { return *ctx_; }

private:
    detail::win::socket_ref ref() const noexcept { return {&ctx_->scheduler_impl(), handle_, skips_}; }

    io_result<void> set_option(int level, int option, int value) noexcept
    {
        return detail::win::set_option(handle_, level, option, value);
    }

    io_result<void> membership(const address& group, unsigned index, bool join, const address_v4& iface) noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        if (!group.is_multicast() || group.is_v6() != ipv6_) return {make_error_code(errc::invalid_argument)};
        if (ipv6_) {
            IPV6_MREQ request{};
            const auto bytes = group.to_v6().to_bytes();
            std::memcpy(&request.ipv6mr_multiaddr, bytes.data(), bytes.size());
            request.ipv6mr_interface = index;
            return detail::win::set_option(handle_, IPPROTO_IPV6, join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP,
                                           request);
        }
        IP_MREQ request{};
        const auto group_bytes = group.to_v4().to_bytes();
        const auto iface_bytes = iface.to_bytes();
        std::memcpy(&request.imr_multiaddr, group_bytes.data(), group_bytes.size());
        std::memcpy(&request.imr_interface, iface_bytes.data(), iface_bytes.size());
        return detail::win::set_option(handle_, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, request);
    }

    io_context* ctx_;
    SOCKET handle_ = INVALID_SOCKET;
    bool skips_ = false;
    bool ipv6_ = false;
};

PORTICO_NAMESPACE_END
