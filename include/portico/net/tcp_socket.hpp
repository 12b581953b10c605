// portico: tcp_socket — a connected TCP stream on an io_context.
#pragma once

#include <portico/config.hpp>

#if PORTICO_BACKEND_NONE
#error "portico: tcp_socket needs an I/O backend; this platform has none yet"
#endif

#include <portico/buffer.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/extensions.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/socket_op.hpp>
#include <portico/detail/win/socket_options.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/detail/win/wsabuf.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/net/resolver.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Awaiter of tcp_socket::read_some(): one WSARecv into up to 64 buffers.
/// Yields io_result<size_t>: the bytes received; eof when the peer closed its
/// side (a 0-byte completion on a non-empty buffer); a zero-length read
/// completes at once with 0 and no error. Never allocates.
class [[nodiscard]] read_some_op : public detail::win::socket_op<read_some_op> {
public:
    /// Made by tcp_socket::read_some(): receives into the first 64 non-empty
    /// buffers of `buffers` (any further ones are ignored), whose memory must
    /// outlive the operation.
    template <class Sequence>
    read_some_op(const detail::win::socket_ref& s, const Sequence& buffers) noexcept : socket_op(s)
    {
        count_ = detail::win::fill_wsabufs<mutable_buffer>(buffers, wsabufs_, total_);
    }

    /// @name Awaiter protocol
    /// @{

    /// Awaiter protocol, called by co_await: await_ready completes at once
    /// when the buffers are empty; the inherited await_suspend starts the
    /// receive and suspends until it completes. await_resume yields the
    /// io_result<size_t> described above.
    bool await_ready() const noexcept { return total_ == 0; }

    io_result<std::size_t> await_resume() const noexcept
    {
        if (!error_ && bytes_ == 0 && total_ != 0) return {make_error_code(errc::eof), 0};
        return {error_, bytes_};
    }
    /// @}

private:
    friend class detail::win::socket_op<read_some_op>;

    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(detail::counter::recv_calls);
        flags_ = 0;
        // NOTE: the call site: once it returns pending, another thread may
        // complete this op; socket_op::await_suspend decides who resumes.
        if (::WSARecv(socket_.handle, wsabufs_.data(), static_cast<DWORD>(count_), &bytes, &flags_, this, nullptr) ==
            0) {
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::array<WSABUF, detail::win::max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
    std::size_t total_ = 0;
    DWORD flags_ = 0;
};

/// Awaiter of tcp_socket::write_some(): one WSASend gathering up to 64
/// buffers. Yields io_result<size_t>: the bytes the kernel took (possibly
/// fewer than offered); a zero-length write completes at once. Never allocates.
class [[nodiscard]] write_some_op : public detail::win::socket_op<write_some_op> {
public:
    /// Made by tcp_socket::write_some(): sends from the first 64 non-empty
    /// buffers of `buffers` (any further ones are ignored), whose memory must
    /// outlive the operation.
    template <class Sequence>
    write_some_op(const detail::win::socket_ref& s, const Sequence& buffers) noexcept : socket_op(s)
    {
        count_ = detail::win::fill_wsabufs<const_buffer>(buffers, wsabufs_, total_);
    }

    /// @name Awaiter protocol
    /// @{

    /// Awaiter protocol, called by co_await: await_ready completes at once
    /// when the buffers are empty; the inherited await_suspend starts the send
    /// and suspends until it completes. await_resume yields the
    /// io_result<size_t> described above.
    bool await_ready() const noexcept { return total_ == 0; }
    io_result<std::size_t> await_resume() const noexcept { return {error_, bytes_}; }
    /// @}

private:
    friend class detail::win::socket_op<write_some_op>;

    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(detail::counter::send_calls);
        // NOTE: see read_some_op::start.
        if (::WSASend(socket_.handle, wsabufs_.data(), static_cast<DWORD>(count_), &bytes, 0, this, nullptr) == 0) {
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::array<WSABUF, detail::win::max_wsabufs> wsabufs_;
    std::size_t count_ = 0;
    std::size_t total_ = 0;
};

/// Awaiter of tcp_socket::connect(): ConnectEx on an implicitly bound
/// socket, then SO_UPDATE_CONNECT_CONTEXT. Yields io_result<void>:
/// connection_refused, timed_out, network_unreachable, operation_aborted...
class [[nodiscard]] connect_op : public detail::win::socket_op<connect_op> {
public:
    /// Made by tcp_socket::connect(endpoint): connects to `remote`. A
    /// `setup_error` (opening or binding the socket failed) is yielded at
    /// once, without connecting.
    connect_op(const detail::win::socket_ref& s, const endpoint& remote, std::error_code setup_error) noexcept
        : socket_op(s), setup_error_(setup_error)
    {
        length_ = detail::win::to_sockaddr(remote, address_);
    }

    /// @name Awaiter protocol
    /// @{

    /// Awaiter protocol, called by co_await: await_ready completes at once
    /// with the setup error, if any; the inherited await_suspend starts
    /// ConnectEx and suspends until it completes. await_resume yields the
    /// io_result<void> described above; after a successful connect it sets
    /// SO_UPDATE_CONNECT_CONTEXT and reports that call's error, if any.
    bool await_ready() const noexcept { return static_cast<bool>(setup_error_); }

    io_result<void> await_resume() const noexcept
    {
        if (setup_error_) return {setup_error_};
        if (error_) return {error_};
        // Without this, getpeername, shutdown and friends fail on the socket.
        if (::setsockopt(socket_.handle, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, nullptr, 0) != 0) {
            return {detail::win::last_socket_error()};
        }
        return {};
    }
    /// @}

private:
    friend class detail::win::socket_op<connect_op>;

    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(detail::counter::connect_calls);
        // NOTE: see read_some_op::start.
        if (detail::win::extensions().connect_ex(socket_.handle, reinterpret_cast<const SOCKADDR*>(&address_), length_,
                                                 nullptr, 0, &bytes, this)) {
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    SOCKADDR_STORAGE address_{};
    int length_ = 0;
    std::error_code setup_error_;
};

/// A TCP connection (or a socket about to connect). Move-only; closing or
/// destroying it aborts its pending operations, which resume once with
/// operation_aborted.
///
/// Thread safety: one read and one write may be pending at once, from any
/// threads; other members must not race with each other or with starting
/// operations.
class tcp_socket {
public:
    /// The platform's socket handle as an integer (a SOCKET on Windows).
    using native_handle_type = std::uintptr_t;

    /// A socket not yet open; connect() opens it.
    explicit tcp_socket(io_context& ctx) noexcept : ctx_(&ctx) {}

    /// Takes over the socket of `other`, which is left closed (is_open() is
    /// false) on the same context.
    tcp_socket(tcp_socket&& other) noexcept
        : ctx_(other.ctx_), handle_(std::exchange(other.handle_, INVALID_SOCKET)), skips_(other.skips_)
    {}
    /// Closes this socket (as close() does) and takes over the socket of
    /// `other`, which is left closed.
    tcp_socket& operator=(tcp_socket&& other) noexcept
    {
        if (this != &other) {
            close();
            ctx_ = other.ctx_;
            handle_ = std::exchange(other.handle_, INVALID_SOCKET);
            skips_ = other.skips_;
        }
        return *this;
    }
    ~tcp_socket() { close(); }

    /// True between a successful open (or connect, or accept) and close().
    [[nodiscard]] bool is_open() const noexcept { return handle_ != INVALID_SOCKET; }

    /// Creates the socket for the given family and associates it with the
    /// context. Errors: no_resources, invalid_argument; bad_state if open.
    io_result<void> open(bool ipv6)
    {
        if (is_open()) return {make_error_code(errc::bad_state)};
        SOCKET s = ::WSASocketW(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
        if (s == INVALID_SOCKET) return {detail::win::last_socket_error()};
        return assign(static_cast<native_handle_type>(s));
    }

    /// Connects to `remote`, opening and binding the socket (any address,
    /// port 0) first if needed. Awaiting yields io_result<void>. Cancel with
    /// the stop token (or close()); wrap in with_timeout for a deadline.
    [[nodiscard]] connect_op connect(const endpoint& remote)
    {
        std::error_code ec;
        if (!is_open()) ec = open(remote.is_v6()).error();
        if (!ec) {
            SOCKADDR_STORAGE any{};
            const endpoint local = remote.is_v6() ? endpoint{address_v6::any(), 0} : endpoint{address_v4::any(), 0};
            const int length = detail::win::to_sockaddr(local, any);
            if (::bind(handle_, reinterpret_cast<const SOCKADDR*>(&any), length) != 0) {
                const auto error = static_cast<DWORD>(::WSAGetLastError());
                // Already bound (by the user, on purpose) is fine.
                if (error != WSAEINVAL) ec = detail::win::socket_error(error);
            }
        }
        return connect_op{ref(), remote, ec};
    }

    /// Resolves `host` and `service` (see resolver) and connects to each
    /// endpoint found, in the system's order, until one accepts. Yields the
    /// endpoint connected to. Errors: the resolver's (host_not_found,
    /// service_not_found...), or the last endpoint's connect error
    /// (connection_refused, timed_out...); operation_aborted on a stop
    /// request. Allocates (the lookup, one frame).
    [[nodiscard]] task<io_result<endpoint>> connect(std::string host, std::string service)
    {
        auto [resolve_ec, endpoints] = co_await resolver(*ctx_).resolve(host, service);
        if (resolve_ec) co_return io_result<endpoint>{resolve_ec, {}};
        std::error_code last = make_error_code(errc::host_not_found);
        for (const endpoint& e : endpoints) {
            // A socket opened for the other family (or left by a failed
            // attempt) cannot be reused: start afresh for each endpoint.
            close();
            auto [ec] = co_await connect(e);
            if (!ec) co_return io_result<endpoint>{{}, e};
            last = ec;
            if (ec == errc::operation_aborted) break;
        }
        close();
        co_return io_result<endpoint>{last, {}};
    }

    /// Receives into a buffer sequence (scatter, up to 64 buffers). See
    /// read_some_op for the result.
    template <class Sequence>
        requires mutable_buffer_sequence<Sequence>
    [[nodiscard]] read_some_op read_some(const Sequence& buffers) noexcept
    {
        return read_some_op{ref(), buffers};
    }

    /// Sends from a buffer sequence (gather, up to 64 buffers). See
    /// write_some_op for the result.
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] write_some_op write_some(const Sequence& buffers) noexcept
    {
        return write_some_op{ref(), buffers};
    }

    /// Receives until every buffer is full, looping over short reads.
    /// Yields the bytes received and the error that stopped it early (eof,
    /// connection_reset...). Allocates one frame.
    template <class Sequence>
        requires mutable_buffer_sequence<Sequence>
    [[nodiscard]] task<io_result<std::size_t>> read(Sequence buffers)
    {
        return transfer_all<mutable_buffer>(std::move(buffers),
                                            [this](std::span<mutable_buffer> next) { return read_some(next); });
    }

    /// Sends every byte, looping over short writes (Wine and full send
    /// buffers produce them). Yields the bytes sent and the error that
    /// stopped it early. Allocates one frame.
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] task<io_result<std::size_t>> write_all(Sequence buffers)
    {
        return transfer_all<const_buffer>(std::move(buffers),
                                          [this](std::span<const_buffer> next) { return write_some(next); });
    }

    /// Sends FIN after the queued data: the peer reads eof. Reads still work.
    io_result<void> shutdown_send() noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        if (::shutdown(handle_, SD_SEND) != 0) {
            return {detail::win::last_socket_error()};
        }
        return {};
    }

    /// Asks every pending operation on this socket to finish with
    /// operation_aborted (CancelIoEx). The socket stays open.
    void cancel() noexcept
    {
        if (!is_open()) return;
        ctx_->scheduler_impl().count(detail::counter::cancel_calls);
        ::CancelIoEx(reinterpret_cast<HANDLE>(handle_), nullptr);
    }

    /// Closes gracefully: queued data is still sent, then FIN. Pending
    /// operations resume with operation_aborted. Idempotent.
    void close() noexcept
    {
        if (is_open()) ::closesocket(std::exchange(handle_, INVALID_SOCKET));
    }

    /// Closes abortively (linger 0): the peer sees connection_reset, queued
    /// data is dropped. Pending operations resume with operation_aborted.
    void close_abortive() noexcept
    {
        if (!is_open()) return;
        LINGER linger{1, 0};
        ::setsockopt(handle_, SOL_SOCKET, SO_LINGER, reinterpret_cast<const char*>(&linger), sizeof linger);
        close();
    }

    /// The local endpoint the socket is bound to. Errors: bad_state if not
    /// open; otherwise the system's.
    [[nodiscard]] io_result<endpoint> local_endpoint() const noexcept
    {
        return detail::win::socket_name(handle_, &::getsockname);
    }
    /// The endpoint of the peer. Errors: bad_state if not open, not_connected
    /// before connecting.
    [[nodiscard]] io_result<endpoint> remote_endpoint() const noexcept
    {
        return detail::win::socket_name(handle_, &::getpeername);
    }

    /// Sets TCP_NODELAY: send small packets at once instead of coalescing
    /// them. Errors: bad_state if not open; otherwise the system's.
    io_result<void> set_no_delay(bool on) noexcept { return set_option(IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0); }
    /// Reads TCP_NODELAY. Errors: bad_state if not open; otherwise the
    /// system's.
    [[nodiscard]] io_result<bool> no_delay() const noexcept { return get_flag(IPPROTO_TCP, TCP_NODELAY); }
    /// Sets SO_KEEPALIVE. Errors: bad_state if not open; otherwise the
    /// system's.
    io_result<void> set_keep_alive(bool on) noexcept { return set_option(SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0); }
    /// Reads SO_KEEPALIVE. Errors: bad_state if not open; otherwise the
    /// system's.
    [[nodiscard]] io_result<bool> keep_alive() const noexcept { return get_flag(SOL_SOCKET, SO_KEEPALIVE); }
    /// Sets SO_RCVBUF, in bytes. Errors: bad_state if not open; otherwise
    /// the system's.
    io_result<void> set_receive_buffer_size(int bytes) noexcept { return set_option(SOL_SOCKET, SO_RCVBUF, bytes); }
    /// Reads SO_RCVBUF, in bytes. Errors: bad_state if not open; otherwise the
    /// system's.
    [[nodiscard]] io_result<int> receive_buffer_size() const noexcept { return get_int(SOL_SOCKET, SO_RCVBUF); }
    /// Sets SO_SNDBUF, in bytes. Errors: bad_state if not open; otherwise the
    /// system's.
    io_result<void> set_send_buffer_size(int bytes) noexcept { return set_option(SOL_SOCKET, SO_SNDBUF, bytes); }
    /// Reads SO_SNDBUF, in bytes. Errors: bad_state if not open; otherwise the
    /// system's.
    [[nodiscard]] io_result<int> send_buffer_size() const noexcept { return get_int(SOL_SOCKET, SO_SNDBUF); }
    /// SO_LINGER: with `on` and 0 seconds, close() resets the connection.
    io_result<void> set_linger(bool on, int seconds) noexcept
    {
        const LINGER linger{static_cast<u_short>(on ? 1 : 0), static_cast<u_short>(seconds)};
        return detail::win::set_option(handle_, SOL_SOCKET, SO_LINGER, linger);
    }

    /// The SOCKET, as an integer (no Windows types in portico's signatures).
    [[nodiscard]] native_handle_type native_handle() const noexcept { return static_cast<native_handle_type>(handle_); }

    /// The context the socket's operations complete on.
    [[nodiscard]] io_context& context() const noexcept { return *ctx_; }

    /// Takes ownership of an open, overlapped socket handle (from
    /// tcp_acceptor, or from other code) and associates it with the context;
    /// a socket already open here is closed first. On error the handle is
    /// closed and the socket stays as it was. Errors: from the association.
    io_result<void> assign(native_handle_type native)
    {
        const auto s = static_cast<SOCKET>(native);
        try {
            skips_ = ctx_->scheduler_impl().associate_socket(s, ctx_->scheduler_impl().skip_completion_on_success());
        } catch (const std::system_error& e) {
            ::closesocket(s);
            return {e.code()};
        }
        close();
        handle_ = s;
        return {};
    }

private:
    // The loop behind read() and write_all(): up to 64 buffers per call,
    // resuming after each short transfer where it stopped.
    template <class Buffer, class Sequence, class Start>
    static task<io_result<std::size_t>> transfer_all(Sequence buffers, Start start)
    {
        buffer_cursor<Buffer, Sequence> cursor(buffers);
        std::size_t done = 0;
        while (!cursor.empty()) {
            std::array<Buffer, detail::win::max_wsabufs> next;
            const std::size_t count = cursor.prepare(std::span(next));
            auto [ec, n] = co_await start(std::span<Buffer>(next.data(), count));
            done += n;
            cursor.consume(n);
            if (ec) co_return io_result<std::size_t>{ec, done};
        }
        co_return io_result<std::size_t>{{}, done};
    }

    detail::win::socket_ref ref() const noexcept { return {&ctx_->scheduler_impl(), handle_, skips_}; }

    io_result<void> set_option(int level, int option, int value) noexcept
    {
        return detail::win::set_option(handle_, level, option, value);
    }
    io_result<int> get_int(int level, int option) const noexcept
    {
        return detail::win::get_int_option(handle_, level, option);
    }
    io_result<bool> get_flag(int level, int option) const noexcept
    {
        return detail::win::get_flag_option(handle_, level, option);
    }

    io_context* ctx_;
    SOCKET handle_ = INVALID_SOCKET;
    bool skips_ = false;
};

PORTICO_NAMESPACE_END
