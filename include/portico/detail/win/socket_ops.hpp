// portico: the Winsock calls behind the socket awaiters — WSARecv, WSASend,
// ConnectEx, WSASendTo and WSARecvFrom — each made in start(), where
// socket_op decides who resumes. The public awaiters (net/tcp_socket.hpp,
// net/udp_socket.hpp) derive from these and add what does not depend on the
// system: when to complete at once, and what the result means.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
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
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

// NOTE, for every start() below: it is the call site. Once the call returns
// pending, another thread may complete this op; socket_op::await_suspend
// decides who resumes, and start() touches nothing after the call.

/// One WSARecv into up to 64 buffers (a stream receive).
class stream_recv_op : public socket_op<stream_recv_op> {
public:
    template <class Sequence>
    stream_recv_op(const socket_ref& s, const Sequence& buffers) noexcept : socket_op(s)
    {
        count_ = fill_wsabufs<mutable_buffer>(buffers, wsabufs_, requested_);
    }

protected:
    /// Bytes the buffers offer (up to the first 64 non-empty ones).
    std::size_t requested_ = 0;

private:
    friend class socket_op<stream_recv_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::recv_calls);
        flags_ = 0;
        if (::WSARecv(socket_.handle, wsabufs_.data(), static_cast<DWORD>(count_), &bytes, &flags_, this, nullptr) ==
            0) {
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::array<WSABUF, max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
    DWORD flags_ = 0;
};

/// One WSASend gathering up to 64 buffers (a stream send).
class stream_send_op : public socket_op<stream_send_op> {
public:
    template <class Sequence>
    stream_send_op(const socket_ref& s, const Sequence& buffers) noexcept : socket_op(s)
    {
        count_ = fill_wsabufs<const_buffer>(buffers, wsabufs_, requested_);
    }

protected:
    std::size_t requested_ = 0;

private:
    friend class socket_op<stream_send_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::send_calls);
        if (::WSASend(socket_.handle, wsabufs_.data(), static_cast<DWORD>(count_), &bytes, 0, this, nullptr) == 0) {
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::array<WSABUF, max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
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
        if (extensions().connect_ex(socket_.handle, reinterpret_cast<const SOCKADDR*>(&address_), length_, nullptr, 0,
                                    &bytes, this)) {
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    SOCKADDR_STORAGE address_{};
    int length_ = 0;
};

/// One WSASendTo gathering up to 64 buffers into one datagram, to an
/// address or (none given) to the connected peer.
class datagram_send_op : public socket_op<datagram_send_op> {
public:
    template <class Sequence>
    datagram_send_op(const socket_ref& s, const Sequence& buffers, const endpoint* to) noexcept : socket_op(s)
    {
        count_ = fill_wsabufs<const_buffer>(buffers, wsabufs_, requested_);
        if (to != nullptr) length_ = to_sockaddr(*to, address_);
    }

protected:
    std::size_t requested_ = 0;

private:
    friend class socket_op<datagram_send_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::send_calls);
        // An empty datagram still needs one (empty) buffer to describe it.
        auto count = static_cast<DWORD>(count_);
        if (count == 0) {
            wsabufs_[0] = WSABUF{0, nullptr};
            count = 1;
        }
        const auto* to = length_ == 0 ? nullptr : reinterpret_cast<const SOCKADDR*>(&address_);
        if (::WSASendTo(socket_.handle, wsabufs_.data(), count, &bytes, 0, to, length_, this, nullptr) == 0) return 0;
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::array<WSABUF, max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
    SOCKADDR_STORAGE address_{};
    int length_ = 0;
};

/// One WSARecvFrom scattering one datagram into up to 64 buffers; a
/// datagram larger than them completes with datagram_truncated.
class datagram_recv_op : public socket_op<datagram_recv_op> {
public:
    template <class Sequence>
    datagram_recv_op(const socket_ref& s, const Sequence& buffers) noexcept : socket_op(s)
    {
        count_ = fill_wsabufs<mutable_buffer>(buffers, wsabufs_, requested_);
    }

protected:
    std::size_t requested_ = 0;

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
        auto count = static_cast<DWORD>(count_);
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

    std::array<WSABUF, max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
    DWORD flags_ = 0;
    SOCKADDR_STORAGE address_{};
    INT address_length_ = 0;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
