// portico: the Winsock calls behind the socket awaiters — WSARecv, WSASend,
// ConnectEx, WSASendTo and WSARecvFrom — each made in start(), where
// socket_op decides who resumes. The public awaiters (net/tcp_socket.hpp,
// net/udp_socket.hpp) derive from these and add what does not depend on the
// system: when to complete at once, and what the result means.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/most_derived.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/extensions.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/socket.hpp>
#include <portico/detail/win/socket_op.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/detail/win/wsabuf.hpp>
#include <portico/io_statistics.hpp>
#include <portico/net/endpoint.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

// NOTE, for every start() below: it is the call site. Once the call returns
// pending, another thread may complete this op; socket_op::await_suspend
// decides who resumes, and start() touches nothing after the call.

/// A socket operation over up to N buffers of type Buffer (N <= 64), taken
/// from a sequence as WSABUFs when it is made. N comes from the sequence's
/// type (wsabufs_for): a receive into one buffer carries one WSABUF, not 64
/// (1 KiB less in the frame of every coroutine that waits in one).
template <class Derived, class Buffer, std::size_t N = max_wsabufs>
class buffers_op : public socket_op<Derived> {
    static_assert(N >= 1 && N <= max_wsabufs);

public:
    template <class Sequence>
    buffers_op(const socket_ref& s, const Sequence& buffers) noexcept : socket_op<Derived>(s)
    {
        count_ = fill_wsabufs<Buffer>(buffers, std::span<WSABUF>(wsabufs_), requested_);
    }

protected:
    /// The WSABUFs and their count; a datagram with no bytes still needs one
    /// (empty) buffer to describe it, so the count is never 0.
    WSABUF* wsabufs() noexcept { return wsabufs_.data(); }
    DWORD wsabuf_count() noexcept
    {
        if (count_ != 0) return static_cast<DWORD>(count_);
        wsabufs_[0] = WSABUF{0, nullptr};
        return 1;
    }

    /// Bytes the buffers offer (up to the first N non-empty ones).
    std::size_t requested_ = 0;

private:
    std::array<WSABUF, N> wsabufs_;
    std::size_t count_ = 0;
};

/// One WSARecv into up to N buffers (a stream receive).
/// Derived: the operation that extends it (read_all_op), or void.
template <std::size_t N = max_wsabufs, class Derived = void>
class stream_recv_op : public buffers_op<most_derived<stream_recv_op<N, Derived>, Derived>, mutable_buffer, N> {
public:
    using stream_recv_op::buffers_op::buffers_op;

private:
    friend class socket_op<most_derived<stream_recv_op, Derived>>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        this->socket_.sched->count(counter::recv_calls);
        flags_ = 0;
        return this->call_result(::WSARecv(this->socket_.handle, this->wsabufs(), this->wsabuf_count(), &bytes, &flags_,
                                           this, nullptr) == 0);
    }

    DWORD flags_ = 0;
};

/// One WSARecv of zero bytes: pending until the socket has something to
/// read (bytes, the peer's end of stream, a reset), consuming nothing. One
/// empty WSABUF, not the 64 of a receive: an idle connection waits in it.
class stream_wait_op : public socket_op<stream_wait_op> {
public:
    explicit stream_wait_op(const socket_ref& s) noexcept : socket_op<stream_wait_op>(s) {}

private:
    friend class socket_op<stream_wait_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::recv_calls);
        flags_ = 0;
        none_ = WSABUF{0, nullptr};
        return call_result(::WSARecv(socket_.handle, &none_, 1, &bytes, &flags_, this, nullptr) == 0);
    }

    WSABUF none_{};
    DWORD flags_ = 0;
};

/// One WSASend gathering up to N buffers (a stream send).
/// Derived: the operation that extends it (write_all_op), or void.
template <std::size_t N = max_wsabufs, class Derived = void>
class stream_send_op : public buffers_op<most_derived<stream_send_op<N, Derived>, Derived>, const_buffer, N> {
public:
    using stream_send_op::buffers_op::buffers_op;

private:
    friend class socket_op<most_derived<stream_send_op, Derived>>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        this->socket_.sched->count(counter::send_calls);
        return this->call_result(
            ::WSASend(this->socket_.handle, this->wsabufs(), this->wsabuf_count(), &bytes, 0, this, nullptr) == 0);
    }
};

/// ConnectEx on a socket bound beforehand (socket_handle::bind_for_connect).
class stream_connect_op : public socket_op<stream_connect_op> {
public:
    stream_connect_op(const socket_ref& s, const endpoint& remote) noexcept : socket_op(s)
    {
        length_ = to_sockaddr(remote, address_);
    }

protected:
    /// After a successful ConnectEx: SO_UPDATE_CONNECT_CONTEXT, without which
    /// getpeername, shutdown and friends fail on the socket.
    [[nodiscard]] std::error_code finish_connect() const noexcept
    {
        if (::setsockopt(socket_.handle, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, nullptr, 0) != 0) {
            return last_socket_error();
        }
        return {};
    }

private:
    friend class socket_op<stream_connect_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::connect_calls);
        return call_result(extensions().connect_ex(socket_.handle, reinterpret_cast<const SOCKADDR*>(&address_),
                                                   length_, nullptr, 0, &bytes, this) != FALSE);
    }

    SOCKADDR_STORAGE address_{};
    int length_ = 0;
};

/// One WSASendTo gathering up to 64 buffers into one datagram, to an
/// address or (none given) to the connected peer.
class datagram_send_op : public buffers_op<datagram_send_op, const_buffer> {
public:
    template <class Sequence>
    datagram_send_op(const socket_ref& s, const Sequence& buffers, const endpoint* to) noexcept : buffers_op(s, buffers)
    {
        if (to != nullptr) length_ = to_sockaddr(*to, address_);
    }

private:
    friend class socket_op<datagram_send_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::send_calls);
        const auto* to = length_ == 0 ? nullptr : reinterpret_cast<const SOCKADDR*>(&address_);
        return call_result(
            ::WSASendTo(socket_.handle, wsabufs(), wsabuf_count(), &bytes, 0, to, length_, this, nullptr) == 0);
    }

    SOCKADDR_STORAGE address_{};
    int length_ = 0;
};

/// One WSARecvFrom scattering one datagram into up to 64 buffers; a
/// datagram larger than them completes with datagram_truncated.
class datagram_recv_op : public buffers_op<datagram_recv_op, mutable_buffer> {
public:
    using buffers_op::buffers_op;

protected:
    /// The sender the kernel wrote, once completed.
    [[nodiscard]] std::optional<endpoint> sender() const noexcept
    {
        return from_sockaddr(reinterpret_cast<const SOCKADDR*>(&address_), address_length_);
    }

private:
    friend class socket_op<datagram_recv_op>;
    static constexpr bool message_size_is_a_warning = true;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::recv_calls);
        flags_ = 0;
        address_length_ = sizeof address_;
        // NOTE: the address and its length are written by the kernel when
        // the datagram arrives, possibly on another thread: they live in
        // this op (in the awaiting frame) until it completes.
        return call_result(::WSARecvFrom(socket_.handle, wsabufs(), wsabuf_count(), &bytes, &flags_,
                                         reinterpret_cast<SOCKADDR*>(&address_), &address_length_, this, nullptr) == 0);
    }

    DWORD flags_ = 0;
    SOCKADDR_STORAGE address_{};
    INT address_length_ = 0;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
