// portico: the io_uring requests behind the stream socket awaiters on Linux
// — receive, send, wait and connect — each filled in prepare(), where
// socket_op submits it and decides who resumes. The public awaiters
// (net/tcp_socket.hpp) derive from these and add what does not depend on
// the system.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/most_derived.hpp>
#include <portico/detail/uring/sockaddr.hpp>
#include <portico/detail/uring/socket.hpp>
#include <portico/detail/uring/socket_op.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>
#include <portico/net/endpoint.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// The most buffers one receive or send takes (as many as one WSARecv takes
/// on Windows); longer sequences are sent in several calls by
/// read()/write_all().
inline constexpr std::size_t max_iovecs = 64;

/// iovecs an operation over a sequence of type Sequence needs: as many as
/// the type can hold (static_buffer_count), at least 1, at most max_iovecs.
template <class Buffer, class Sequence>
inline constexpr std::size_t iovecs_for =
    (std::max)(std::size_t{1}, (std::min)(static_buffer_count<Buffer, Sequence>(), max_iovecs));

/// Fills `out` with the first out.size() non-empty buffers of the sequence;
/// returns how many, and their bytes in `total` (at most INT_MAX in all:
/// the request's result is an int).
template <class Buffer, class Sequence>
std::size_t fill_iovecs(const Sequence& buffers, std::span<iovec> out, std::size_t& total) noexcept
{
    constexpr std::size_t most = INT_MAX;
    std::size_t count = 0;
    total = 0;
    for_each_buffer<Buffer>(buffers, [&](const Buffer& b) {
        if (count == out.size() || b.size() == 0 || total == most) return;
        const std::size_t length = (std::min)(b.size(), most - total);
        out[count].iov_base = const_cast<void*>(static_cast<const void*>(b.data()));
        out[count].iov_len = length;
        total += length;
        ++count;
    });
    return count;
}

/// A socket operation over up to N buffers of type Buffer (N <= 64), taken
/// from a sequence as iovecs when it is made.
template <class Derived, class Buffer, std::size_t N = max_iovecs>
class iovecs_op : public socket_op<Derived> {
    static_assert(N >= 1 && N <= max_iovecs);

public:
    template <class Sequence>
    iovecs_op(const socket_ref& s, const Sequence& buffers) noexcept : socket_op<Derived>(s)
    {
        count_ = fill_iovecs<Buffer>(buffers, std::span<iovec>(iovecs_), requested_);
    }

protected:
    /// Fills `sqe` for one buffer with `single` (IORING_OP_RECV or SEND: no
    /// message header for the kernel to copy) or for several with `vector`
    /// (RECVMSG or SENDMSG, over the message header kept in the op).
    void prepare_buffers(io_uring_sqe& sqe, std::uint8_t single, std::uint8_t vector, int flags) noexcept
    {
        sqe.fd = this->socket_.handle;
        sqe.msg_flags = static_cast<std::uint32_t>(flags);
        if constexpr (N > 1) {
            if (count_ > 1) {
                message_ = msghdr{};
                message_.msg_iov = iovecs_.data();
                message_.msg_iovlen = count_;
                sqe.opcode = vector;
                sqe.addr = reinterpret_cast<std::uintptr_t>(&message_);
                sqe.len = 1;
                return;
            }
        } else {
            (void)vector;
        }
        sqe.opcode = single;
        sqe.addr = reinterpret_cast<std::uintptr_t>(count_ == 0 ? nullptr : iovecs_[0].iov_base);
        sqe.len = count_ == 0 ? 0u : static_cast<std::uint32_t>(iovecs_[0].iov_len);
    }

    /// Fills `sqe` with `opcode` (SENDMSG or RECVMSG) over the message
    /// header kept in the op, always, with the address `name` (a datagram's
    /// destination, or where its sender is written; null for none). The
    /// kernel writes the received address's length back to message().
    void prepare_message(io_uring_sqe& sqe, std::uint8_t opcode, int flags, void* name, socklen_t name_length) noexcept
        requires(N > 1)
    {
        message_ = msghdr{};
        message_.msg_name = name;
        message_.msg_namelen = name_length;
        message_.msg_iov = iovecs_.data();
        message_.msg_iovlen = count_;
        sqe.opcode = opcode;
        sqe.fd = this->socket_.handle;
        sqe.addr = reinterpret_cast<std::uintptr_t>(&message_);
        sqe.len = 1;
        sqe.msg_flags = static_cast<std::uint32_t>(flags);
    }

    [[nodiscard]] const msghdr& message() const noexcept
        requires(N > 1)
    {
        return message_;
    }

    /// Bytes the buffers offer (up to the first N non-empty ones).
    std::size_t requested_ = 0;

private:
    struct no_message {};

    std::array<iovec, N> iovecs_;
    std::size_t count_ = 0;
    // NOTE: only an op over several buffers needs a message header (56
    // bytes, in every frame that holds the op): one buffer goes as a plain
    // RECV or SEND.
    [[no_unique_address]] std::conditional_t<(N > 1), msghdr, no_message> message_{};
};

/// One receive into up to N buffers (a stream receive).
/// Derived: the operation that extends it (read_all_op), or void.
template <std::size_t N = max_iovecs, class Derived = void>
class stream_recv_op : public iovecs_op<most_derived<stream_recv_op<N, Derived>, Derived>, mutable_buffer, N> {
public:
    using stream_recv_op::iovecs_op::iovecs_op;

private:
    friend class socket_op<most_derived<stream_recv_op, Derived>>;
    static constexpr counter call_counter = counter::recv_calls;

    void prepare(io_uring_sqe& sqe) noexcept { this->prepare_buffers(sqe, IORING_OP_RECV, IORING_OP_RECVMSG, 0); }
};

/// A wait until the socket has something to read (bytes, the peer's end of
/// stream, a reset), consuming nothing: a one-shot poll for input.
class stream_wait_op : public socket_op<stream_wait_op> {
public:
    explicit stream_wait_op(const socket_ref& s) noexcept : socket_op<stream_wait_op>(s) {}

private:
    friend class socket_op<stream_wait_op>;
    static constexpr counter call_counter = counter::recv_calls;

    void prepare(io_uring_sqe& sqe) noexcept
    {
        sqe.opcode = IORING_OP_POLL_ADD;
        sqe.fd = socket_.handle;
        sqe.poll32_events = POLLIN | POLLRDHUP;
    }
};

/// One send gathering up to N buffers (a stream send). MSG_NOSIGNAL: a
/// peer gone away is an error (connection_reset), never a SIGPIPE.
/// Derived: the operation that extends it (write_all_op), or void.
template <std::size_t N = max_iovecs, class Derived = void>
class stream_send_op : public iovecs_op<most_derived<stream_send_op<N, Derived>, Derived>, const_buffer, N> {
public:
    using stream_send_op::iovecs_op::iovecs_op;

private:
    friend class socket_op<most_derived<stream_send_op, Derived>>;
    static constexpr counter call_counter = counter::send_calls;

    void prepare(io_uring_sqe& sqe) noexcept
    {
        this->prepare_buffers(sqe, IORING_OP_SEND, IORING_OP_SENDMSG, MSG_NOSIGNAL);
    }
};

/// One connect to a remote endpoint.
class stream_connect_op : public socket_op<stream_connect_op> {
public:
    stream_connect_op(const socket_ref& s, const endpoint& remote) noexcept : socket_op<stream_connect_op>(s)
    {
        length_ = to_sockaddr(remote, address_);
    }

    /// Nothing to finish on Linux (Windows sets SO_UPDATE_CONNECT_CONTEXT).
    [[nodiscard]] std::error_code finish_connect() const noexcept { return {}; }

private:
    friend class socket_op<stream_connect_op>;
    static constexpr counter call_counter = counter::connect_calls;

    void prepare(io_uring_sqe& sqe) noexcept
    {
        sqe.opcode = IORING_OP_CONNECT;
        sqe.fd = socket_.handle;
        sqe.addr = reinterpret_cast<std::uintptr_t>(&address_);
        sqe.off = length_;
    }

    sockaddr_storage address_{};
    socklen_t length_ = 0;
};

/// One send gathering up to 64 buffers into one datagram, to an address
/// or (none given) to the connected peer.
class datagram_send_op : public iovecs_op<datagram_send_op, const_buffer> {
public:
    template <class Sequence>
    datagram_send_op(const socket_ref& s, const Sequence& buffers, const endpoint* to) noexcept : iovecs_op(s, buffers)
    {
        if (to != nullptr) length_ = to_sockaddr(*to, address_);
    }

private:
    friend class socket_op<datagram_send_op>;
    static constexpr counter call_counter = counter::send_calls;

    void prepare(io_uring_sqe& sqe) noexcept
    {
        prepare_message(sqe, IORING_OP_SENDMSG, MSG_NOSIGNAL, length_ == 0 ? nullptr : &address_, length_);
    }

    sockaddr_storage address_{};
    socklen_t length_ = 0;
};

/// One receive scattering one datagram into up to 64 buffers; a datagram
/// larger than them completes with datagram_truncated, the buffers full.
class datagram_recv_op : public iovecs_op<datagram_recv_op, mutable_buffer> {
public:
    using iovecs_op::iovecs_op;

protected:
    /// The sender the kernel wrote, once completed.
    [[nodiscard]] std::optional<endpoint> sender() const noexcept
    {
        return from_sockaddr(address_, message().msg_namelen);
    }

private:
    friend class socket_op<datagram_recv_op>;
    static constexpr counter call_counter = counter::recv_calls;

    void prepare(io_uring_sqe& sqe) noexcept
    {
        // MSG_TRUNC: the result is the datagram's whole length, even when
        // the buffers held less, which is how truncation shows (completed()).
        prepare_message(sqe, IORING_OP_RECVMSG, MSG_TRUNC, &address_, sizeof address_);
    }

    /// Called by socket_op once the request completed, before resuming.
    void completed() noexcept
    {
        if (!error_ && bytes_ > requested_) {
            bytes_ = requested_;
            error_ = make_error_code(errc::datagram_truncated);
        }
    }

    sockaddr_storage address_{};
};

/// One accept on a listening socket: the new connection's descriptor (close-on-exec)
/// is the completion's result, read with accepted_fd(); the peer's address
/// with peer().
class stream_accept_op : public socket_op<stream_accept_op> {
public:
    explicit stream_accept_op(const socket_ref& listener) noexcept : socket_op<stream_accept_op>(listener) {}

    /// The accepted descriptor, once completed without error (the caller
    /// owns it).
    [[nodiscard]] int accepted_fd() const noexcept { return static_cast<int>(bytes_); }
    /// The peer's endpoint, once completed without error.
    [[nodiscard]] std::optional<endpoint> peer() const noexcept { return from_sockaddr(address_, length_); }

private:
    friend class socket_op<stream_accept_op>;
    static constexpr counter call_counter = counter::accept_calls;

    void prepare(io_uring_sqe& sqe) noexcept
    {
        length_ = sizeof address_;
        sqe.opcode = IORING_OP_ACCEPT;
        sqe.fd = socket_.handle;
        sqe.addr = reinterpret_cast<std::uintptr_t>(&address_);
        sqe.addr2 = reinterpret_cast<std::uintptr_t>(&length_);
        sqe.accept_flags = SOCK_CLOEXEC;
    }

    sockaddr_storage address_{};
    socklen_t length_ = 0;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
