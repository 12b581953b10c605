// portico: udp_socket — datagrams on an io_context: send_to/recv_from,
// broadcast and multicast.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/backend.hpp>
#include <portico/detail/socket_option.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/address.hpp>
#include <portico/net/basic_socket.hpp>
#include <portico/net/endpoint.hpp>

#include <cstddef>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// The largest datagram UDP over IPv4 carries: 65,535 minus the IP and UDP
/// headers (20 + 8 bytes).
inline constexpr std::size_t max_datagram_size = 65535 - 28;

/// Awaiter of udp_socket::send_to() and send(): one send gathering up to 64
/// buffers into one datagram. Yields io_result<size_t>, the bytes sent (a
/// datagram goes whole or not at all). An empty datagram is sent too.
/// Errors: invalid_argument for a datagram larger than UDP allows,
/// not_connected for send() on an unconnected socket, operation_aborted...
/// Never allocates. See read_some_op for what every socket awaiter shares.
class [[nodiscard]] send_to_op : public detail::backend::datagram_send_op {
public:
    /// Made by udp_socket::send_to() (`to` is the destination) and send()
    /// (`to` is null: the connected peer).
    template <class Sequence>
    send_to_op(const detail::backend::socket_ref& socket, const Sequence& buffers, const endpoint* to) noexcept
        : datagram_send_op(socket, buffers, to)
    {}

    /// The io_result<size_t> described above.
    io_result<std::size_t> await_resume() const noexcept
    {
        // For a send, "message too large" is the caller's datagram, not a
        // truncated receive.
        if (error_ == errc::datagram_truncated) return {make_error_code(errc::invalid_argument), 0};
        return {error_, bytes_};
    }
};

/// Awaiter of udp_socket::recv_from() and recv(): one receive scattering one
/// datagram into up to 64 buffers. Yields io_result<size_t>, the bytes
/// received; an empty datagram is 0 bytes and no error (UDP has no end of
/// stream). A datagram larger than the buffers: datagram_truncated, with the
/// buffers holding its start and the byte count saying how much; the next
/// receive gets the next datagram. The sender's endpoint is stored where
/// recv_from() was told, also with datagram_truncated. Never allocates. See
/// read_some_op for what every socket awaiter shares.
class [[nodiscard]] recv_from_op : public detail::backend::datagram_recv_op {
public:
    /// Made by udp_socket::recv_from() (`from` receives the sender) and recv()
    /// (`from` is null).
    template <class Sequence>
    recv_from_op(const detail::backend::socket_ref& socket, const Sequence& buffers, endpoint* from) noexcept
        : datagram_recv_op(socket, buffers), from_(from)
    {}

    /// Stores the sender (on success and on datagram_truncated) and yields
    /// the io_result<size_t> described above.
    io_result<std::size_t> await_resume() const noexcept
    {
        if ((!error_ || error_ == errc::datagram_truncated) && from_ != nullptr) {
            if (auto e = sender()) *from_ = *e;
        }
        return {error_, bytes_};
    }

private:
    endpoint* from_;
};

/// A UDP socket. Move-only (as tcp_socket); closing or destroying it aborts its pending
/// operations (operation_aborted). The members it shares with tcp_socket
/// (close, cancel, endpoints, buffer sizes) are basic_socket's.
///
/// An ICMP "port unreachable" answering an earlier send never fails a
/// receive (on Windows SIO_UDP_CONNRESET is turned off when the socket
/// opens), so one dead peer cannot break a server's receive loop.
///
/// Thread safety: one receive and any number of sends may be pending at
/// once, from any threads; other members must not race with each other or
/// with starting operations.
class udp_socket : public basic_socket {
public:
    /// A socket not yet open; open() or bind() opens it.
    explicit udp_socket(io_context& ctx) noexcept : basic_socket(ctx) {}

    /// True for an IPv6 socket.
    [[nodiscard]] bool is_v6() const noexcept { return ipv6_; }

    /// Creates the socket for IPv4 or IPv6 and associates it with the
    /// context. Errors: no_resources, invalid_argument; bad_state if open.
    io_result<void> open(bool ipv6)
    {
        auto ec = open_socket(ipv6, detail::socket_kind::datagram);
        if (!ec) ipv6_ = ipv6;
        return {ec};
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
            if (auto [ec] = handle_.set_option(detail::socket_option::reuse_address, 1); ec) return {ec};
        }
        return {handle_.bind(local)};
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
        return {handle_.connect(remote)};
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
    io_result<void> set_broadcast(bool on) noexcept { return handle_.set_option(detail::socket_option::broadcast, on); }
    /// Reads SO_BROADCAST.
    [[nodiscard]] io_result<bool> broadcast() const noexcept { return flag(detail::socket_option::broadcast); }

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
    io_result<void> set_multicast_loopback(bool on) noexcept { return handle_.set_option(multicast_loop(), on); }
    /// Reads the multicast loopback option of the socket's family.
    [[nodiscard]] io_result<bool> multicast_loopback() const noexcept { return flag(multicast_loop()); }

    /// How many routers a multicast datagram may cross (IPv4 TTL, IPv6 hop
    /// limit), 0-255. Default 1: the local network.
    io_result<void> set_multicast_hops(int hops) noexcept
    {
        if (hops < 0 || hops > 255) return {make_error_code(errc::invalid_argument)};
        return handle_.set_option(
            ipv6_ ? detail::socket_option::multicast_hops_v6 : detail::socket_option::multicast_hops_v4, hops);
    }
    /// Reads the multicast hop limit (IPv4 TTL, IPv6 hop limit).
    [[nodiscard]] io_result<int> multicast_hops() const noexcept
    {
        return handle_.option(ipv6_ ? detail::socket_option::multicast_hops_v6
                                    : detail::socket_option::multicast_hops_v4);
    }

    /// The interface multicast datagrams leave by: an IPv4 interface address.
    io_result<void> set_multicast_interface(const address_v4& interface_address) noexcept
    {
        if (ipv6_) return {make_error_code(errc::invalid_argument)};
        return handle_.set_multicast_interface(interface_address);
    }
    /// The interface multicast datagrams leave by: an IPv6 interface index.
    io_result<void> set_multicast_interface(unsigned interface_index) noexcept
    {
        if (!ipv6_) return {make_error_code(errc::invalid_argument)};
        return handle_.set_multicast_interface(interface_index);
    }

private:
    detail::socket_option multicast_loop() const noexcept
    {
        return ipv6_ ? detail::socket_option::multicast_loop_v6 : detail::socket_option::multicast_loop_v4;
    }

    io_result<void> membership(const address& group, unsigned index, bool join, const address_v4& iface) noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        if (!group.is_multicast() || group.is_v6() != ipv6_) return {make_error_code(errc::invalid_argument)};
        return handle_.set_membership(group, index, iface, join);
    }

    bool ipv6_ = false;
};

PORTICO_NAMESPACE_END
