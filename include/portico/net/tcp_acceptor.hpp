// portico: tcp_acceptor — a listening TCP socket with AcceptEx calls kept posted.
#pragma once

#include <portico/config.hpp>

#if PORTICO_BACKEND_NONE
#error "portico: tcp_acceptor needs an I/O backend; this platform has none yet"
#endif

#include <portico/coro/task.hpp>
#include <portico/detail/win/accept_pool.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/net/tcp_socket.hpp>
#include <portico/stop_token.hpp>

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Awaiter of tcp_acceptor::accept(). Yields io_result<tcp_socket>: the
/// accepted connection, associated with the acceptor's context; or
/// operation_aborted (acceptor closed, context stopped, stop requested),
/// bad_state (the acceptor is not listening), no_resources (no socket could
/// be created for the next connection). Never allocates.
class [[nodiscard]] accept_op : private detail::win::accept_waiter {
public:
    /// Made by tcp_acceptor::accept(): `pool` is null when the acceptor is
    /// not listening; `peer`, if not null, receives the peer's endpoint.
    accept_op(io_context& ctx, detail::win::accept_pool* pool, endpoint* peer) noexcept
        : accept_waiter(&accept_op::on_posted), ctx_(&ctx), pool_(pool), peer_(peer)
    {
        if (pool_ != nullptr) pool_->add_ref();
    }

    accept_op(const accept_op&) = delete;
    accept_op& operator=(const accept_op&) = delete;
    /// Moves an accept not awaited yet (when_all, with_timeout... take
    /// awaitables by value).
    accept_op(accept_op&& other) noexcept
        : accept_waiter(&accept_op::on_posted), ctx_(other.ctx_), pool_(other.pool_), peer_(other.peer_)
    {
        assert(!other.linked && !other.cancel_ && "moving an accept that was already started");
        if (pool_ != nullptr) pool_->add_ref();
    }
    accept_op& operator=(accept_op&&) = delete;

    ~accept_op()
    {
        // Waits for a stop callback running on another thread: it touches us.
        cancel_.reset();
        if (pool_ == nullptr) return;
        // A frame destroyed while suspended here must not stay in the list.
        const bool unlinked_here = pool_->unlink(*this);
        if (!resumed_ && !unlinked_here && progress.load(std::memory_order_acquire) != state::idle) {
            // Destroyed while suspended, after someone took the waiter from
            // the list to finish it: a packet may be on its way to this
            // OVERLAPPED. Keep the frame until it arrives (as socket_op does);
            // register before publishing `orphaned`, which lets it be freed.
            if (!deferrable || !detail::orphan_registry::for_this_thread().add(this, &deferred)) std::terminate();
            progress.exchange(state::orphaned, std::memory_order_acq_rel);
        }
        // A connection handed over but never taken by await_resume.
        if (socket != INVALID_SOCKET) ::closesocket(socket);
        pool_->release();
    }

    /// @name Awaiter protocol
    /// @{

    /// Awaiter protocol, called by co_await: completes at once with bad_state
    /// if the acceptor is not listening, with operation_aborted if stop was
    /// already requested, or with a connection already accepted; otherwise
    /// queues and suspends until a connection comes, the acceptor closes or
    /// stop is requested. await_resume yields the io_result<tcp_socket>
    /// described above (or the error from associating the socket with the
    /// context).
    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        continuation = awaiting;
        deferrable = std::is_base_of_v<detail::frame_allocation, Promise>;
        if (pool_ == nullptr) {
            error = make_error_code(errc::bad_state);
            return false;
        }
        portico::stop_token token = detail::stop_token_of(awaiting);
        if (token.stop_requested()) {
            error = make_error_code(errc::operation_aborted);
            return false;
        }
        if (pool_->take_or_wait(*this)) return false;
        // Queued: from here a completing slot on another thread may finish us.
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        auto expected = state::idle;
        // RACE: after this succeeds the finisher may resume the coroutine and
        // destroy this awaiter at once: touch nothing more.
        return progress.compare_exchange_strong(expected, state::running, std::memory_order_acq_rel);
    }

    io_result<tcp_socket> await_resume()
    {
        resumed_ = true;
        tcp_socket s(*ctx_);
        if (error) return {error, std::move(s)};
        auto [ec] = s.assign(static_cast<tcp_socket::native_handle_type>(std::exchange(socket, INVALID_SOCKET)));
        if (ec) return {ec, std::move(s)};
        if (peer_ != nullptr && remote) *peer_ = *remote;
        return {{}, std::move(s)};
    }
    /// @}

private:
    struct canceller {
        accept_op* op;
        void operator()() const noexcept
        {
            // Whoever unlinks the waiter finishes it; if a slot or close()
            // got there first, there is nothing to cancel.
            if (op->pool_->unlink(*op)) {
                op->error = make_error_code(errc::operation_aborted);
                op->pool_->finish(*op, false);
            }
        }
    };

    // A waiter finished from outside a pool thread comes back through the port.
    static void on_posted(detail::win::overlapped_op* base, ULONG_PTR, DWORD) noexcept
    {
        auto* self = static_cast<accept_op*>(static_cast<accept_waiter*>(base));
        if (self->progress.load(std::memory_order_acquire) == state::orphaned) {
            // The frame was destroyed after this packet was posted.
            if (self->deferred.arrive()) {
                detail::frame_allocation::release(self->deferred.block, self->deferred.size);
            }
            return;
        }
        self->continuation.resume();
    }

    io_context* ctx_;
    detail::win::accept_pool* pool_;
    endpoint* peer_;
    bool resumed_ = false;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

/// A listening TCP socket. listen() binds and listens, then keeps a pool of
/// AcceptEx calls posted, so `co_await acceptor.accept()` usually finds a
/// connection already accepted. A client that resets before its accept
/// completes is dropped quietly; the listener goes on.
///
/// Closing the acceptor (close(), the destructor, or the context's stop())
/// resumes every pending accept once with operation_aborted and closes the
/// sockets made for connections not yet accepted.
///
/// Thread safety: accept(), close() and local_endpoint() may be called from
/// any threads at once; listen() and moves must not race with anything.
class tcp_acceptor {
public:
    /// The platform's socket handle as an integer (a SOCKET on Windows).
    using native_handle_type = std::uintptr_t;

    /// The backlog that asks the system for its maximum (SOMAXCONN).
    static constexpr int max_backlog = 0x7fffffff;

    /// Construction options.
    struct options {
        /// Connections the system queues before they are accepted.
        int backlog = max_backlog;
        /// AcceptEx calls kept posted (at least 1).
        unsigned accept_depth = 16;
        /// false: SO_EXCLUSIVEADDRUSE, nobody else may bind the port while
        /// this acceptor holds it. true: SO_REUSEADDR, for restarting on a
        /// port with connections still in TIME_WAIT (on Windows it also lets
        /// another socket bind the same port: use it knowingly).
        bool reuse_address = false;
    };

    /// An acceptor not yet listening; listen() opens it.
    explicit tcp_acceptor(io_context& ctx) noexcept : tcp_acceptor(ctx, options{}) {}
    /// An acceptor not yet listening, with the given options; listen() opens
    /// it.
    tcp_acceptor(io_context& ctx, options opts) noexcept : ctx_(&ctx), options_(opts) {}

    /// Takes over the listener and pending accepts of `other`, which is left
    /// not listening (as if never opened, on the same context and options).
    tcp_acceptor(tcp_acceptor&& other) noexcept
        : ctx_(other.ctx_), options_(other.options_), pool_(std::exchange(other.pool_, nullptr))
    {}
    /// Closes this acceptor (as the destructor does) and takes over `other`,
    /// which is left not listening.
    tcp_acceptor& operator=(tcp_acceptor&& other) noexcept
    {
        if (this != &other) {
            release();
            ctx_ = other.ctx_;
            options_ = other.options_;
            pool_ = std::exchange(other.pool_, nullptr);
        }
        return *this;
    }
    ~tcp_acceptor() { release(); }

    /// Opens a socket for `local`'s family, binds it to `local` (port 0: any
    /// free port; see local_endpoint()), listens, and posts the AcceptEx
    /// pool. Errors: address_in_use, invalid_argument (not a local
    /// address), no_resources; bad_state if already listening.
    io_result<void> listen(const endpoint& local)
    {
        if (pool_ != nullptr) return {make_error_code(errc::bad_state)};
        SOCKET s =
            ::WSASocketW(local.is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
        if (s == INVALID_SOCKET) return {detail::win::last_socket_error()};
        const int on = 1;
        const int option = options_.reuse_address ? SO_REUSEADDR : SO_EXCLUSIVEADDRUSE;
        SOCKADDR_STORAGE storage{};
        const int length = detail::win::to_sockaddr(local, storage);
        if (::setsockopt(s, SOL_SOCKET, option, reinterpret_cast<const char*>(&on), sizeof on) != 0 ||
            ::bind(s, reinterpret_cast<const SOCKADDR*>(&storage), length) != 0 ||
            ::listen(s, options_.backlog == max_backlog ? SOMAXCONN : options_.backlog) != 0) {
            const auto error = detail::win::last_socket_error();
            ::closesocket(s);
            return {error};
        }
        try {
            // No skip-on-success for the listener: every AcceptEx completes
            // through the port, so a slot has exactly one way to finish.
            ctx_->scheduler_impl().associate(reinterpret_cast<HANDLE>(s));
            pool_ = new detail::win::accept_pool(ctx_->scheduler_impl(), s, local.is_v6() ? AF_INET6 : AF_INET,
                                                 options_.accept_depth, ctx_->get_stop_token());
        } catch (const std::system_error& e) {
            ::closesocket(s);
            return {e.code()};
        } catch (const std::bad_alloc&) {
            ::closesocket(s);
            return {make_error_code(errc::no_resources)};
        }
        return {};
    }

    /// Accepts the next connection. See accept_op for the result. Cancel
    /// with the stop token; wrap in with_timeout for a deadline.
    [[nodiscard]] accept_op accept() noexcept { return accept_op{*ctx_, pool_, nullptr}; }

    /// As accept(), and stores the peer's endpoint in `peer` on success
    /// (`peer` must outlive the await).
    [[nodiscard]] accept_op accept(endpoint& peer) noexcept { return accept_op{*ctx_, pool_, &peer}; }

    /// The bound address (with the port the system chose for port 0).
    /// Errors: bad_state if not listening, operation_aborted once closed.
    [[nodiscard]] io_result<endpoint> local_endpoint() const noexcept
    {
        if (pool_ == nullptr) return {make_error_code(errc::bad_state), {}};
        endpoint e;
        const auto ec = pool_->local_endpoint(e);
        return {ec, e};
    }

    /// True between a successful listen() and close().
    [[nodiscard]] bool is_listening() const noexcept { return pool_ != nullptr && pool_->listener() != INVALID_SOCKET; }

    /// Stops listening: pending accepts resume once with operation_aborted,
    /// connections not yet accepted are closed. Idempotent; any thread.
    void close() noexcept
    {
        if (pool_ != nullptr) pool_->close();
    }

    /// Connections dropped between handshake and accept (a client reset);
    /// the listener re-posted and went on. For tests and monitoring.
    [[nodiscard]] std::uint64_t failed_accepts() const noexcept
    {
        return pool_ != nullptr ? pool_->failed_accepts() : 0;
    }

    /// The listening SOCKET as an integer, or the invalid value.
    [[nodiscard]] native_handle_type native_handle() const noexcept
    {
        return static_cast<native_handle_type>(pool_ != nullptr ? pool_->listener() : INVALID_SOCKET);
    }

    /// The context accepted sockets complete on.
    [[nodiscard]] io_context& context() const noexcept { return *ctx_; }

private:
    void release() noexcept
    {
        if (pool_ != nullptr) std::exchange(pool_, nullptr)->release_owner();
    }

    io_context* ctx_;
    options options_;
    detail::win::accept_pool* pool_ = nullptr;
};

PORTICO_NAMESPACE_END
