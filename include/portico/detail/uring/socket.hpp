// portico: socket_handle on Linux — an owned socket descriptor and the
// synchronous calls on it (open, bind, options, names, shutdown, close).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/socket_option.hpp>
#include <portico/detail/uring/error_map.hpp>
#include <portico/detail/uring/scheduler.hpp>
#include <portico/detail/uring/sockaddr.hpp>
#include <portico/detail/uring/socket_state.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>
#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// What a socket operation needs of its socket: the ring's scheduler, the
/// descriptor and its shared state.
struct socket_ref {
    scheduler* sched = nullptr;
    int handle = -1;
    socket_state* state = nullptr;
};

/// An owned descriptor (a socket or a file) tied to a scheduler: closed by
/// the destructor, moved, never copied. What socket_handle and file_handle
/// share: ownership, the shared state, close and cancel.
/// Thread safety: as the owning portico object.
class descriptor {
public:
    descriptor() noexcept = default;
    /// Owns `fd` (or nothing, if negative), which has no shared state until
    /// associate() gives it one.
    explicit descriptor(int fd) noexcept : fd_(fd < 0 ? -1 : fd) {}
    descriptor(const descriptor&) = delete;
    descriptor& operator=(const descriptor&) = delete;
    descriptor(descriptor&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)), sched_(std::exchange(other.sched_, nullptr)),
          state_(std::exchange(other.state_, nullptr))
    {}
    descriptor& operator=(descriptor&& other) noexcept
    {
        if (this != &other) {
            close();
            fd_ = std::exchange(other.fd_, -1);
            sched_ = std::exchange(other.sched_, nullptr);
            state_ = std::exchange(other.state_, nullptr);
        }
        return *this;
    }
    ~descriptor() { close(); }

    /// Takes ownership of `fd` (not yet associated with any scheduler),
    /// closing any descriptor held before. On error (no_resources: no memory
    /// for its shared state) `fd` is closed.
    std::error_code adopt(int fd) noexcept
    {
        close();
        auto* state = new (std::nothrow) socket_state;
        if (state == nullptr) {
            ::close(fd);
            return make_error_code(errc::no_resources);
        }
        fd_ = fd;
        state_ = state;
        return {};
    }

    /// Ties the descriptor to `sched`, whose ring its operations use (and
    /// whose requests close() cancels), giving it its shared state if it has
    /// none yet. Nothing to register with the kernel: `skip_on_success` has
    /// no meaning here, every request completes through the ring. Errors:
    /// bad_state if nothing is held; no_resources if the state could not be
    /// allocated (the descriptor is then closed).
    std::error_code associate(scheduler& sched, bool /*skip_on_success*/) noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        if (state_ == nullptr) {
            state_ = new (std::nothrow) socket_state;
            if (state_ == nullptr) {
                ::close(std::exchange(fd_, -1));
                return make_error_code(errc::no_resources);
            }
        }
        sched_ = &sched;
        return {};
    }

    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] std::uintptr_t native() const noexcept { return static_cast<std::uintptr_t>(fd_); }
    [[nodiscard]] socket_ref ref(scheduler& sched) const noexcept { return {&sched, fd_, state_}; }

    /// Gives up ownership without closing.
    int release() noexcept
    {
        sched_ = nullptr;
        if (socket_state* state = std::exchange(state_, nullptr)) state->release();
        return std::exchange(fd_, -1);
    }

    /// Closes the descriptor (a TCP socket gracefully: queued data still goes
    /// out, then FIN). Pending operations complete with operation_aborted: a
    /// request holds its own reference to the file, so close() alone would
    /// leave it pending, and it is cancelled first, on every ring that may
    /// hold one; an operation whose start is still on its way to a pool
    /// thread finds it closed and starts nothing. Idempotent.
    void close() noexcept
    {
        if (!is_open()) return;
        scheduler* sched = std::exchange(sched_, nullptr);
        socket_state* state = std::exchange(state_, nullptr);
        const int fd = std::exchange(fd_, -1);
        if (state == nullptr) {
            // Never associated: no operation can have been started on it.
            ::close(fd);
            return;
        }
        bool done_here = false; // the cancel's reference to drop (cancel_descriptor)
        {
            // RACE: under the state's lock, so no hop submits between the
            // cancel and the close (socket_state).
            std::lock_guard lock(*state);
            state->closed = true;
            // NOTE: on every ring a request of this descriptor went to, and
            // before the number is free for reuse: a cancel by descriptor
            // that came later would find the new file's requests instead.
            // A ring with requests still queued closes it for us, once it
            // has submitted them (scheduler::cancel_descriptor).
            if (sched != nullptr) {
                done_here = sched->cancel_descriptor(*state, fd, true);
            } else {
                ::close(fd);
            }
        }
        if (done_here) state->release();
        state->release();
    }

    /// Asks every pending operation to complete with operation_aborted. The
    /// descriptor stays open. A ring with requests still queued cancels
    /// there once it has submitted them (scheduler::cancel_descriptor).
    void cancel(scheduler& sched) const noexcept
    {
        if (!is_open() || state_ == nullptr) return;
        bool done_here = false; // the cancel's reference to drop (cancel_descriptor)
        {
            std::lock_guard lock(*state_);
            done_here = sched.cancel_descriptor(*state_, fd_, false);
        }
        if (done_here) state_->release();
    }

    /// Records that a request on this descriptor goes to ring `index`
    /// (before it is submitted), for close() and cancel().
    void note_ring(unsigned index) const noexcept
    {
        if (state_ != nullptr) state_->note_ring(scheduler::ring_bit(index));
    }

protected:
    int fd_ = -1;
    scheduler* sched_ = nullptr;
    socket_state* state_ = nullptr; // non-null once open and associated
};

/// An owned socket. Every call on a closed socket reports bad_state. Errors
/// are portable conditions (socket_error). Thread safety: as the owning
/// portico socket.
class socket_handle : public descriptor {
public:
    socket_handle() noexcept = default;
    /// Owns the socket descriptor `native` (from accept, or from other code);
    /// associate() gives it its shared state.
    explicit socket_handle(std::uintptr_t native) noexcept : descriptor(static_cast<int>(native)) {}

    /// Creates a socket of `kind` for IPv4 or IPv6 (close-on-exec), closing
    /// any socket held before. Errors: no_resources, invalid_argument.
    std::error_code open(bool v6, socket_kind kind) noexcept
    {
        const bool stream = kind == socket_kind::stream;
        const int fd = ::socket(v6 ? AF_INET6 : AF_INET, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC,
                                stream ? IPPROTO_TCP : IPPROTO_UDP);
        if (fd < 0) return last_socket_error();
        return adopt(fd);
    }

    /// Closes with linger 0: the peer sees a reset, queued data is dropped.
    void close_abortive() noexcept
    {
        if (!is_open()) return;
        (void)set_linger(true, 0);
        close();
    }

    /// Sends FIN after the queued data.
    [[nodiscard]] std::error_code shutdown_send() const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        return ::shutdown(fd_, SHUT_WR) == 0 ? std::error_code{} : last_socket_error();
    }

    [[nodiscard]] std::error_code bind(const endpoint& local) const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        sockaddr_storage storage{};
        const socklen_t length = to_sockaddr(local, storage);
        if (::bind(fd_, reinterpret_cast<const sockaddr*>(&storage), length) != 0) return last_socket_error();
        return {};
    }

    /// Nothing to do on Linux: connect binds an unbound socket itself. (On
    /// Windows ConnectEx needs a bound socket.)
    [[nodiscard]] std::error_code bind_for_connect(bool /*v6*/) const noexcept
    {
        return is_open() ? std::error_code{} : make_error_code(errc::bad_state);
    }

    /// listen(); `backlog` below 0 or above SOMAXCONN asks for the maximum.
    [[nodiscard]] std::error_code listen(int backlog) const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        const int n = backlog < 0 || backlog >= SOMAXCONN ? SOMAXCONN : backlog;
        return ::listen(fd_, n) == 0 ? std::error_code{} : last_socket_error();
    }

    /// connect() of a datagram socket: sets its default peer, sends nothing.
    [[nodiscard]] std::error_code connect(const endpoint& remote) const noexcept
    {
        if (!is_open()) return make_error_code(errc::bad_state);
        sockaddr_storage storage{};
        const socklen_t length = to_sockaddr(remote, storage);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&storage), length) != 0) return last_socket_error();
        return {};
    }

    io_result<void> set_option(socket_option option, int value) const noexcept
    {
        // Linux refuses to bind a port another socket holds unless both ask
        // (SO_REUSEPORT): what Windows needs SO_EXCLUSIVEADDRUSE for.
        if (option == socket_option::exclusive_address) {
            return {is_open() ? std::error_code{} : make_error_code(errc::bad_state)};
        }
        const auto [level, name] = option_name(option);
        return set_raw(level, name, value);
    }

    [[nodiscard]] io_result<int> option(socket_option option) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state), 0};
        if (option == socket_option::exclusive_address) return {{}, 1};
        const auto [level, name] = option_name(option);
        int value = 0;
        socklen_t length = sizeof value;
        if (::getsockopt(fd_, level, name, &value, &length) != 0) return {last_socket_error(), 0};
        return {{}, value};
    }

    /// Keep-alive on, the first probe after `idle_ms` without traffic, then
    /// one every `interval_ms`, in whole seconds as Linux counts them: at
    /// least 1, at most 32,767 (the kernel's MAX_TCP_KEEPIDLE, about 9
    /// hours; longer is clamped). How many probes before the connection
    /// fails is the system's (tcp_keepalive_probes, 9 by default). Errors:
    /// bad_state if closed, otherwise the system's.
    io_result<void> set_keep_alive_timing(unsigned long idle_ms, unsigned long interval_ms) const noexcept
    {
        static constexpr unsigned long longest_s = 32767;
        const auto seconds = [](unsigned long ms) {
            return static_cast<int>(ms < 1000 ? 1 : (std::min)(ms / 1000, longest_s));
        };
        const int idle = seconds(idle_ms);
        const int interval = seconds(interval_ms);
        if (auto r = set_raw(SOL_SOCKET, SO_KEEPALIVE, 1); r.error()) return r;
        if (auto r = set_raw(IPPROTO_TCP, TCP_KEEPIDLE, idle); r.error()) return r;
        return set_raw(IPPROTO_TCP, TCP_KEEPINTVL, interval);
    }

    io_result<void> set_linger(bool on, int seconds) const noexcept
    {
        const ::linger value{on ? 1 : 0, seconds};
        return set_raw(SOL_SOCKET, SO_LINGER, value);
    }

    /// Joins (`join`) or leaves a multicast group: IPv6 on the interface with
    /// index `index`, IPv4 on the interface with address `iface`.
    io_result<void> set_membership(const address& group, unsigned index, const address_v4& iface,
                                   bool join) const noexcept
    {
        if (group.is_v6()) {
            ipv6_mreq request{};
            const auto bytes = group.to_v6().to_bytes();
            std::memcpy(&request.ipv6mr_multiaddr, bytes.data(), bytes.size());
            request.ipv6mr_interface = index;
            return set_raw(IPPROTO_IPV6, join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP, request);
        }
        ip_mreq request{};
        const auto group_bytes = group.to_v4().to_bytes();
        const auto iface_bytes = iface.to_bytes();
        std::memcpy(&request.imr_multiaddr, group_bytes.data(), group_bytes.size());
        std::memcpy(&request.imr_interface, iface_bytes.data(), iface_bytes.size());
        return set_raw(IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, request);
    }

    /// The interface IPv4 multicast datagrams leave by.
    io_result<void> set_multicast_interface(const address_v4& iface) const noexcept
    {
        in_addr a{};
        const auto bytes = iface.to_bytes();
        std::memcpy(&a, bytes.data(), sizeof a);
        return set_raw(IPPROTO_IP, IP_MULTICAST_IF, a);
    }

    /// The interface IPv6 multicast datagrams leave by.
    io_result<void> set_multicast_interface(unsigned index) const noexcept
    {
        return set_raw(IPPROTO_IPV6, IPV6_MULTICAST_IF, static_cast<int>(index));
    }

    /// getsockname as an endpoint. Errors: bad_state, invalid_argument.
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
        case socket_option::exclusive_address: break; // handled by the callers
        case socket_option::multicast_loop_v4: return {IPPROTO_IP, IP_MULTICAST_LOOP};
        case socket_option::multicast_loop_v6: return {IPPROTO_IPV6, IPV6_MULTICAST_LOOP};
        case socket_option::multicast_hops_v4: return {IPPROTO_IP, IP_MULTICAST_TTL};
        case socket_option::multicast_hops_v6: return {IPPROTO_IPV6, IPV6_MULTICAST_HOPS};
        }
        return {SOL_SOCKET, 0};
    }

    template <class T>
    io_result<void> set_raw(int level, int name, const T& value) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        if (::setsockopt(fd_, level, name, &value, sizeof value) != 0) return {last_socket_error()};
        return {};
    }

    template <class Getter>
    io_result<endpoint> name_of(Getter getter) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state), {}};
        sockaddr_storage storage{};
        socklen_t length = sizeof storage;
        if (getter(fd_, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return {last_socket_error(), {}};
        auto e = from_sockaddr(storage, length);
        if (!e) return {make_error_code(errc::invalid_argument), {}};
        return {{}, *e};
    }
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
