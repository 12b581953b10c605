// portico: basic_socket — what tcp_socket and udp_socket share.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/backend.hpp>
#include <portico/detail/socket_option.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/net/endpoint.hpp>

#include <cstdint>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// The part of a socket that does not depend on its protocol: ownership of
/// the system's socket, the context its operations complete on, cancel and
/// close, its endpoints and buffer sizes. tcp_socket and udp_socket derive
/// from it; it is not used on its own.
///
/// Errors of the synchronous members: bad_state on a closed socket,
/// otherwise the system's error as a portable condition (see errc).
///
/// Thread safety: the members here must not race with each other or with
/// starting operations; pending operations may complete on any thread.
class basic_socket {
public:
    /// The platform's socket handle as an integer (a SOCKET on Windows).
    using native_handle_type = std::uintptr_t;

    /// True between a successful open (or connect, bind, accept) and close().
    [[nodiscard]] bool is_open() const noexcept { return handle_.is_open(); }

    /// Asks every pending operation on this socket to finish with
    /// operation_aborted. The socket stays open.
    void cancel() noexcept { handle_.cancel(scheduler()); }

    /// Closes the socket (a TCP socket gracefully: queued data is still
    /// sent, then FIN). Pending operations resume with operation_aborted.
    /// Idempotent.
    void close() noexcept { handle_.close(); }

    /// The local endpoint the socket is bound to. Errors: bad_state if not
    /// open, invalid_argument if not bound yet.
    [[nodiscard]] io_result<endpoint> local_endpoint() const noexcept { return handle_.local_endpoint(); }

    /// The peer's endpoint. Errors: bad_state if not open, not_connected if
    /// the socket has no peer.
    [[nodiscard]] io_result<endpoint> remote_endpoint() const noexcept { return handle_.remote_endpoint(); }

    /// Sets the receive buffer size (SO_RCVBUF), in bytes.
    io_result<void> set_receive_buffer_size(int bytes) noexcept
    {
        return handle_.set_option(detail::socket_option::receive_buffer_size, bytes);
    }
    /// The receive buffer size (SO_RCVBUF), in bytes.
    [[nodiscard]] io_result<int> receive_buffer_size() const noexcept
    {
        return handle_.option(detail::socket_option::receive_buffer_size);
    }
    /// Sets the send buffer size (SO_SNDBUF), in bytes.
    io_result<void> set_send_buffer_size(int bytes) noexcept
    {
        return handle_.set_option(detail::socket_option::send_buffer_size, bytes);
    }
    /// The send buffer size (SO_SNDBUF), in bytes.
    [[nodiscard]] io_result<int> send_buffer_size() const noexcept
    {
        return handle_.option(detail::socket_option::send_buffer_size);
    }

    /// The system's socket, as an integer (no platform types in portico's
    /// signatures); the invalid value when closed.
    [[nodiscard]] native_handle_type native_handle() const noexcept { return handle_.native(); }

    /// The context the socket's operations complete on.
    [[nodiscard]] io_context& context() const noexcept { return *ctx_; }

protected:
    /// A socket not yet open, on `ctx`.
    explicit basic_socket(io_context& ctx) noexcept : ctx_(&ctx) {}
    /// Takes over the socket of `other`, which is left closed on the same
    /// context.
    basic_socket(basic_socket&& other) noexcept = default;
    /// Closes this socket, then takes over the socket of `other`.
    basic_socket& operator=(basic_socket&& other) noexcept = default;
    ~basic_socket() = default;

    /// Opens a socket of `kind` and associates it with the context (with
    /// skip-on-success where the context allows it). Errors: no_resources,
    /// invalid_argument, bad_state if already open, or the association's.
    std::error_code open_socket(bool v6, detail::socket_kind kind) noexcept
    {
        if (is_open()) return make_error_code(errc::bad_state);
        detail::backend::socket_handle fresh;
        if (auto ec = fresh.open(v6, kind)) return ec;
        return adopt(std::move(fresh));
    }

    /// Associates `fresh` with the context and makes it this socket's,
    /// closing the one held before; on error `fresh` is closed and this
    /// socket stays as it was.
    std::error_code adopt(detail::backend::socket_handle fresh) noexcept
    {
        if (auto ec = fresh.associate(scheduler(), scheduler().skip_completion_on_success())) return ec;
        handle_ = std::move(fresh);
        return {};
    }

    /// The backend behind the context.
    [[nodiscard]] detail::backend::scheduler& scheduler() const noexcept
    {
        return detail::context_access::scheduler(*ctx_);
    }

    /// An on/off option read back as bool.
    [[nodiscard]] io_result<bool> flag(detail::socket_option option) const noexcept
    {
        auto [ec, value] = handle_.option(option);
        return {ec, value != 0};
    }

    /// What an operation on this socket needs of it.
    [[nodiscard]] detail::backend::socket_ref ref() const noexcept { return handle_.ref(scheduler()); }

    /// The context operations complete on (never null).
    io_context* ctx_;
    /// The system's socket, owned.
    detail::backend::socket_handle handle_;
};

PORTICO_NAMESPACE_END
