// A connected pair of tcp_sockets over loopback, for socket tests that do not
// test accepting: the server side is accepted with the system's plain
// blocking sockets (the handshake completes from the backlog, so accept()
// does not block).
#pragma once

#include <portico/net/tcp_socket.hpp>
#include <portico/coro/task.hpp>
#if PORTICO_BACKEND_IOCP
#include <portico/detail/win/windows.hpp>
#else
#include <portico/detail/uring/sockaddr.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#endif

#include "support/catch.hpp"

#include <chrono>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace portico::test {

#if PORTICO_BACKEND_IOCP
/// A listening socket on 127.0.0.1 (or ::1) with an OS-chosen port.
class raw_listener {
public:
    explicit raw_listener(bool ipv6 = false, int backlog = SOMAXCONN)
    {
        handle_ = ::WSASocketW(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
        if (handle_ == INVALID_SOCKET) throw std::system_error(::WSAGetLastError(), std::system_category(), "socket");
        const endpoint local{ipv6 ? address{address_v6::loopback()} : address{address_v4::loopback()}, 0};
        SOCKADDR_STORAGE storage;
        const int length = detail::win::to_sockaddr(local, storage);
        if (::bind(handle_, reinterpret_cast<SOCKADDR*>(&storage), length) != 0 || ::listen(handle_, backlog) != 0) {
            throw std::system_error(::WSAGetLastError(), std::system_category(), "bind/listen");
        }
        int named = sizeof storage;
        ::getsockname(handle_, reinterpret_cast<SOCKADDR*>(&storage), &named);
        endpoint_ = *detail::win::from_sockaddr(reinterpret_cast<SOCKADDR*>(&storage), named);
    }
    raw_listener(const raw_listener&) = delete;
    raw_listener& operator=(const raw_listener&) = delete;
    ~raw_listener() { ::closesocket(handle_); }

    const endpoint& local() const noexcept { return endpoint_; }

    /// Accepts one connection already in the backlog into a tcp_socket.
    tcp_socket accept(io_context& ctx)
    {
        SOCKET s = ::accept(handle_, nullptr, nullptr);
        if (s == INVALID_SOCKET) throw std::system_error(::WSAGetLastError(), std::system_category(), "accept");
        tcp_socket socket(ctx);
        auto [ec] = socket.assign(static_cast<tcp_socket::native_handle_type>(s));
        if (ec) throw std::system_error(ec, "adopt");
        return socket;
    }

private:
    SOCKET handle_ = INVALID_SOCKET;
    endpoint endpoint_;
};
#else
/// A listening socket on 127.0.0.1 (or ::1) with an OS-chosen port.
class raw_listener {
public:
    explicit raw_listener(bool ipv6 = false, int backlog = SOMAXCONN)
    {
        handle_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
        if (handle_ < 0) throw std::system_error(errno, std::system_category(), "socket");
        const endpoint local{ipv6 ? address{address_v6::loopback()} : address{address_v4::loopback()}, 0};
        sockaddr_storage storage{};
        socklen_t length = detail::uring::to_sockaddr(local, storage);
        if (::bind(handle_, reinterpret_cast<sockaddr*>(&storage), length) != 0 || ::listen(handle_, backlog) != 0) {
            const int error = errno;
            ::close(handle_);
            throw std::system_error(error, std::system_category(), "bind/listen");
        }
        length = sizeof storage;
        ::getsockname(handle_, reinterpret_cast<sockaddr*>(&storage), &length);
        endpoint_ = *detail::uring::from_sockaddr(storage, length);
    }
    raw_listener(const raw_listener&) = delete;
    raw_listener& operator=(const raw_listener&) = delete;
    ~raw_listener() { ::close(handle_); }

    const endpoint& local() const noexcept { return endpoint_; }

    /// Accepts one connection already in the backlog into a tcp_socket.
    tcp_socket accept(io_context& ctx)
    {
        const int s = ::accept4(handle_, nullptr, nullptr, SOCK_CLOEXEC);
        if (s < 0) throw std::system_error(errno, std::system_category(), "accept");
        tcp_socket socket(ctx);
        auto [ec] = socket.assign(static_cast<tcp_socket::native_handle_type>(s));
        if (ec) throw std::system_error(ec, "adopt");
        return socket;
    }

private:
    int handle_ = -1;
    endpoint endpoint_;
};
#endif

/// Connects a client to a fresh listener and accepts it: {client, server}.
inline task<std::pair<tcp_socket, tcp_socket>> connected_pair(io_context& ctx, bool ipv6 = false)
{
    raw_listener listener(ipv6);
    tcp_socket client(ctx);
    auto [ec] = co_await client.connect(listener.local());
    if (ec) throw std::system_error(ec, "connect");
    tcp_socket server = listener.accept(ctx);
    co_return std::pair<tcp_socket, tcp_socket>{std::move(client), std::move(server)};
}

/// A bound on a test that waits for something from the network: unless
/// dismissed (destroyed) first, closes `peer` abortively after `limit`, so
/// the waiting side gets an error and the test fails instead of hanging.
/// Runs on a thread of its own, not on a timer: it must hold even when the
/// context's timers are what is being tested. On Windows it waits on a Win32
/// event: the Microsoft STL's timed condition_variable wait needs an export
/// that Wine's msvcp140 lacks.
#if PORTICO_BACKEND_IOCP
class peer_closer {
public:
    peer_closer(tcp_socket& peer, std::chrono::milliseconds limit)
        : dismissed_(::CreateEventW(nullptr, TRUE, FALSE, nullptr)), thread_([this, &peer, limit] {
              if (::WaitForSingleObject(dismissed_, static_cast<DWORD>(limit.count())) == WAIT_TIMEOUT) {
                  peer.close_abortive();
              }
          })
    {}
    peer_closer(const peer_closer&) = delete;
    peer_closer& operator=(const peer_closer&) = delete;
    ~peer_closer()
    {
        ::SetEvent(dismissed_);
        thread_.join();
        ::CloseHandle(dismissed_);
    }

private:
    HANDLE dismissed_;
    std::thread thread_;
};
#else
class peer_closer {
public:
    peer_closer(tcp_socket& peer, std::chrono::milliseconds limit)
        : thread_([this, &peer, limit] {
              std::unique_lock lock(mutex_);
              if (!dismissed_changed_.wait_for(lock, limit, [this] { return dismissed_; })) peer.close_abortive();
          })
    {}
    peer_closer(const peer_closer&) = delete;
    peer_closer& operator=(const peer_closer&) = delete;
    ~peer_closer()
    {
        {
            std::lock_guard lock(mutex_);
            dismissed_ = true;
        }
        dismissed_changed_.notify_one();
        thread_.join();
    }

private:
    std::mutex mutex_;
    std::condition_variable dismissed_changed_;
    bool dismissed_ = false;
    std::thread thread_; // last: it reads the members above
};
#endif

} // namespace portico::test
