// portico: tcp_acceptor — a listening TCP socket with accepts kept posted.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/backend.hpp>
#include <portico/detail/socket_option.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/net/tcp_socket.hpp>

#include <cstdint>
#include <new>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Awaiter of tcp_acceptor::accept(). Yields io_result<tcp_socket>: the
/// accepted connection, associated with the acceptor's context; or
/// operation_aborted (acceptor closed, context stopped, stop requested),
/// bad_state (the acceptor is not listening), no_resources (no socket could
/// be created for the next connection), or the error from associating the
/// socket with the context. Completes at once with a connection accepted
/// before it was awaited; otherwise suspends until one comes, the acceptor
/// closes or stop is requested. Movable until awaited, awaited once (see
/// read_some_op). Never allocates.
class [[nodiscard]] accept_op : public detail::backend::accept_awaiter {
public:
    /// Made by tcp_acceptor::accept(): `pool` is null when the acceptor is
    /// not listening; `peer`, if not null, receives the peer's endpoint.
    accept_op(io_context& ctx, detail::backend::accept_pool* pool, endpoint* peer) noexcept
        : detail::backend::accept_awaiter(pool), ctx_(&ctx), peer_(peer)
    {}

    /// The io_result<tcp_socket> described above.
    io_result<tcp_socket> await_resume()
    {
        tcp_socket s(*ctx_);
        if (auto ec = result()) return {ec, std::move(s)};
        if (auto [ec] = s.assign(take_socket()); ec) return {ec, std::move(s)};
        if (peer_ != nullptr && peer()) *peer_ = *peer();
        return {{}, std::move(s)};
    }

private:
    io_context* ctx_;
    endpoint* peer_;
};

/// A listening TCP socket. listen() binds and listens, then keeps accepts
/// posted (a pool of AcceptEx on Windows, one multishot accept on Linux), so
/// `co_await acceptor.accept()` usually finds a connection already accepted.
/// A client that resets before its accept completes is dropped quietly; the
/// listener goes on.
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
    using native_handle_type = basic_socket::native_handle_type;

    /// The backlog that asks the system for its maximum (SOMAXCONN).
    static constexpr int max_backlog = 0x7fffffff;

    /// Construction options.
    struct options {
        /// Connections the system queues before they are accepted.
        int backlog = max_backlog;
        /// Connections accepted ahead of accept() (at least 1). On Windows,
        /// the AcceptEx calls kept posted. On Linux one multishot accept
        /// serves the listener and pauses while this many connections wait
        /// unclaimed; a burst already in the backlog when it runs is
        /// accepted whole, so the wait may exceed it by up to the backlog.
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
    /// free port; see local_endpoint()), listens, and posts the pool of
    /// accepts. Errors: address_in_use, invalid_argument (not a local
    /// address), no_resources; bad_state if already listening.
    io_result<void> listen(const endpoint& local)
    {
        if (pool_ != nullptr) return {make_error_code(errc::bad_state)};
        detail::backend::socket_handle listener;
        auto& sched = detail::context_access::scheduler(*ctx_);
        std::error_code ec = listener.open(local.is_v6(), detail::socket_kind::stream);
        if (!ec) {
            const auto exclusive = options_.reuse_address ? detail::socket_option::reuse_address
                                                          : detail::socket_option::exclusive_address;
            ec = listener.set_option(exclusive, 1).error();
        }
        if (!ec) ec = listener.bind(local);
        if (!ec) ec = listener.listen(options_.backlog);
        // No skip-on-success for the listener: every accept completes
        // through the port, so a slot has exactly one way to finish.
        if (!ec) ec = listener.associate(sched, false);
        if (ec) return {ec};
        pool_ = new (std::nothrow) detail::backend::accept_pool(sched, std::move(listener), local.is_v6(),
                                                                options_.accept_depth, ctx_->get_stop_token());
        if (pool_ == nullptr) return {make_error_code(errc::no_resources)};
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
        return pool_->local_endpoint();
    }

    /// True between a successful listen() and close().
    [[nodiscard]] bool is_listening() const noexcept
    {
        return pool_ != nullptr && pool_->listener() != detail::backend::socket_handle{}.native();
    }

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

    /// The listening socket as an integer, or the invalid value.
    [[nodiscard]] native_handle_type native_handle() const noexcept
    {
        return pool_ != nullptr ? pool_->listener() : detail::backend::socket_handle{}.native();
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
    detail::backend::accept_pool* pool_ = nullptr;
};

PORTICO_NAMESPACE_END
