// portico: tcp_socket — a connected TCP stream on an io_context.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/deadline.hpp>
#include <portico/detail/backend.hpp>
#include <portico/detail/socket_option.hpp>
#include <portico/error.hpp>
#include <portico/file/random_access_file.hpp>
#include <portico/io_context.hpp>
#include <portico/net/basic_socket.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/net/resolver.hpp>
#include <portico/stop_token.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Awaiter of tcp_socket::read_some(): one receive into up to MaxBuffers
/// buffers (64 at most; read_some() takes it from the sequence's type: 1
/// for a single buffer, N for an array of N, 64 for a range whose length
/// only its value tells, so that a coroutine reading into one buffer does
/// not carry room for 64 in its frame).
/// Yields io_result<size_t>: the bytes received; eof when the peer closed its
/// side (a 0-byte completion on a non-empty buffer); a zero-length read
/// completes at once with 0 and no error. Errors: connection_reset,
/// connection_aborted, operation_aborted (cancelled, closed, stop
/// requested)... Never allocates.
///
/// Like every socket operation it is an awaiter: made by the socket's
/// member, then `co_await`ed once (await_ready, await_suspend and
/// await_resume are the protocol co_await calls). It may be moved until it
/// is awaited (when_all and with_timeout take awaitables by value), never
/// after: the system holds it while the operation is pending. The memory of
/// the buffers must outlive the operation.
template <std::size_t MaxBuffers = detail::backend::max_buffers>
class [[nodiscard]] read_some_op : public detail::backend::stream_recv_op<MaxBuffers> {
public:
    /// Made by tcp_socket::read_some(), over the first MaxBuffers non-empty
    /// buffers of `buffers` (any further ones are ignored).
    template <class Sequence>
    read_some_op(const detail::backend::socket_ref& socket, const Sequence& buffers) noexcept
        : detail::backend::stream_recv_op<MaxBuffers>(socket, buffers)
    {}

    /// Completes at once when the buffers are empty.
    bool await_ready() const noexcept { return this->requested_ == 0; }
    /// The io_result<size_t> described above.
    io_result<std::size_t> await_resume() const noexcept
    {
        if (!this->error_ && this->bytes_ == 0 && this->requested_ != 0) return {make_error_code(errc::eof), 0};
        return {this->error_, this->bytes_};
    }
};

/// Awaiter of tcp_socket::wait_readable(): a receive of zero bytes, which
/// completes once the peer sent something (or closed, or reset) and
/// consumes nothing. Yields io_result<void>: success when a read would not
/// wait (bytes are there, or the peer's end of stream, which the next read
/// reports as eof); connection_reset, operation_aborted (cancelled, closed,
/// stop requested)... Never allocates. See read_some_op for what every
/// socket awaiter shares.
class [[nodiscard]] wait_readable_op : public detail::backend::stream_wait_op {
public:
    /// Made by tcp_socket::wait_readable().
    explicit wait_readable_op(const detail::backend::socket_ref& socket) noexcept : stream_wait_op(socket) {}

    /// The io_result<void> described above.
    io_result<void> await_resume() const noexcept { return {error_}; }
};

/// Awaiter of tcp_socket::write_some(): one send gathering up to MaxBuffers
/// buffers (sized as read_some_op's).
/// Yields io_result<size_t>: the bytes the system took (possibly fewer than
/// offered); a zero-length write completes at once. Never allocates. See
/// read_some_op for what every socket awaiter shares.
template <std::size_t MaxBuffers = detail::backend::max_buffers>
class [[nodiscard]] write_some_op : public detail::backend::stream_send_op<MaxBuffers> {
public:
    /// Made by tcp_socket::write_some(), over the first MaxBuffers non-empty
    /// buffers of `buffers` (any further ones are ignored).
    template <class Sequence>
    write_some_op(const detail::backend::socket_ref& socket, const Sequence& buffers) noexcept
        : detail::backend::stream_send_op<MaxBuffers>(socket, buffers)
    {}

    /// Completes at once when the buffers are empty.
    bool await_ready() const noexcept { return this->requested_ == 0; }
    /// The io_result<size_t> described above.
    io_result<std::size_t> await_resume() const noexcept { return {this->error_, this->bytes_}; }
};

/// Awaiter of tcp_socket::connect(endpoint). Yields io_result<void>:
/// connection_refused, timed_out, network_unreachable, operation_aborted...
/// A `setup_error` (opening or binding the socket failed) is yielded at once,
/// without connecting. See read_some_op for what every socket awaiter shares.
class [[nodiscard]] connect_op : public detail::backend::stream_connect_op {
public:
    /// Made by tcp_socket::connect(endpoint): connects to `remote`.
    connect_op(const detail::backend::socket_ref& socket, const endpoint& remote, std::error_code setup_error) noexcept
        : stream_connect_op(socket, remote), setup_error_(setup_error)
    {}

    /// Completes at once with the setup error, if any.
    bool await_ready() const noexcept { return static_cast<bool>(setup_error_); }
    /// The io_result<void> described above.
    io_result<void> await_resume() const noexcept
    {
        if (setup_error_) return {setup_error_};
        if (error_) return {error_};
        return {finish_connect()};
    }

private:
    std::error_code setup_error_;
};

/// How tcp_socket::transmit_file() divides a file into system calls, and
/// how long one may take.
struct transmit_file_options {
    /// The most file bytes one system call sends: 1 GiB (the default) or
    /// less; 0 means the default. Smaller calls make a transfer's progress
    /// visible (call_timeout watches each), and under Wine, which copies the
    /// file on the thread that made the call, bound how long that thread is
    /// kept from other connections, at some cost in throughput
    /// (docs/design/files.md measures it).
    std::uint64_t bytes_per_call = detail::backend::max_transmit_file_bytes;
    /// The longest one call may take; 0 (the default) sets no limit. A peer
    /// that takes longer to read bytes_per_call bytes (or one that stopped
    /// reading: the call would wait for it for ever) ends the transfer with
    /// timed_out, the bytes sent so far in the result. A download server
    /// sets it, with bytes_per_call, to the slowest rate it serves.
    std::chrono::milliseconds call_timeout{0};
};

class tcp_socket;

namespace detail {
template <class Buffer, class Sequence, template <std::size_t, class> class Request>
class transfer_all_op;
} // namespace detail

/// Awaiter of tcp_socket::read_all(): receives until every buffer of the
/// sequence is full, looping over short reads. Yields io_result<size_t>: the
/// bytes received, and the error that stopped it early (eof, when the peer
/// ended its stream first; connection_reset; operation_aborted...); an
/// empty sequence completes at once with 0. The first receive is made
/// inside the awaiting coroutine's frame, as read_some()'s is, so a read
/// that one receive fills allocates nothing; one that comes up short goes
/// on in a coroutine of its own, which allocates one frame (the frame
/// cache's, once warm). No frame for it: no_resources, with the bytes so
/// far. The sequence is kept in the awaiter (the memory of its buffers must
/// outlive the operation). See read_some_op for what every socket awaiter
/// shares.
template <class Sequence>
using read_all_op = detail::transfer_all_op<mutable_buffer, Sequence, detail::backend::stream_recv_op>;

/// Awaiter of tcp_socket::write_all(): sends every byte of the sequence,
/// looping over short writes (Wine and full send buffers make them). Yields
/// io_result<size_t>: the bytes sent, and the error that stopped it early
/// (connection_reset, operation_aborted...); allocates as read_all_op does.
template <class Sequence>
using write_all_op = detail::transfer_all_op<const_buffer, Sequence, detail::backend::stream_send_op>;

/// A TCP connection (or a socket about to connect). Move-only (a move leaves
/// the source closed on the same context; move-assigning closes the target
/// first); closing or destroying it aborts its pending operations, which resume once with
/// operation_aborted. The members it shares with udp_socket (close, cancel,
/// endpoints, buffer sizes) are basic_socket's.
///
/// Thread safety: one read and one write may be pending at once, from any
/// threads; other members must not race with each other or with starting
/// operations. read_all(), write_all() and transmit_file() start one call
/// after another while they are pending, so a close() or cancel() from
/// another thread races with those starts: end them through their stop
/// token (with_timeout, a stop_source), and close once they returned.
class tcp_socket : public basic_socket {
public:
    /// A socket not yet open; connect() opens it.
    explicit tcp_socket(io_context& ctx) noexcept : basic_socket(ctx) {}

    /// Creates the socket for the given family and associates it with the
    /// context. Errors: no_resources, invalid_argument; bad_state if open.
    io_result<void> open(bool ipv6) { return {open_socket(ipv6, detail::socket_kind::stream)}; }

    /// Connects to `remote`, opening and binding the socket (any address,
    /// port 0; a socket already bound stays so) first if needed. Awaiting
    /// yields io_result<void>. Cancel with the stop token (or close()); wrap
    /// in with_timeout for a deadline.
    [[nodiscard]] connect_op connect(const endpoint& remote)
    {
        std::error_code ec;
        if (!is_open()) ec = open(remote.is_v6()).error();
        if (!ec) ec = handle_.bind_for_connect(remote.is_v6());
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
    [[nodiscard]] read_some_op<detail::backend::buffers_for<mutable_buffer, Sequence>>
    read_some(const Sequence& buffers) noexcept
    {
        return {ref(), buffers};
    }

    /// Waits, holding no buffer, until a read would not wait: until the peer
    /// sent bytes, ended its stream or reset the connection. Nothing is
    /// consumed. For many mostly idle connections: wait here, then take a
    /// buffer (from a pool) and read_some() what arrived, so an idle
    /// connection holds no receive buffer (one more system call per
    /// wake-up). Windows: a zero-byte WSARecv. See wait_readable_op for the
    /// result.
    [[nodiscard]] wait_readable_op wait_readable() noexcept { return wait_readable_op{ref()}; }

    /// Sends from a buffer sequence (gather, up to 64 buffers). See
    /// write_some_op for the result.
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] write_some_op<detail::backend::buffers_for<const_buffer, Sequence>>
    write_some(const Sequence& buffers) noexcept
    {
        return {ref(), buffers};
    }

    /// Receives until every buffer is full, looping over short reads. See
    /// read_all_op for the result; allocates nothing unless a receive
    /// comes up short.
    template <class Sequence>
        requires mutable_buffer_sequence<Sequence>
    [[nodiscard]] read_all_op<Sequence> read_all(Sequence buffers)
    {
        return read_all_op<Sequence>(ref(), *this, std::move(buffers));
    }

    /// Sends every byte, looping over short writes. See write_all_op for
    /// the result; allocates nothing unless a send comes up short.
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] write_all_op<Sequence> write_all(Sequence buffers)
    {
        return write_all_op<Sequence>(ref(), *this, std::move(buffers));
    }

    /// Sends FIN after the queued data: the peer reads eof. Reads still work.
    /// Errors: bad_state if not open; not_connected.
    io_result<void> shutdown_send() noexcept { return {handle_.shutdown_send()}; }

    /// Closes abortively (linger 0): the peer sees connection_reset, queued
    /// data is dropped. Pending operations resume with operation_aborted.
    void close_abortive() noexcept { handle_.close_abortive(); }

    /// Sets TCP_NODELAY: send small packets at once instead of coalescing
    /// them (Nagle). Errors: bad_state if not open; otherwise the system's.
    io_result<void> set_no_delay(bool on) noexcept { return handle_.set_option(detail::socket_option::no_delay, on); }
    /// Reads TCP_NODELAY.
    [[nodiscard]] io_result<bool> no_delay() const noexcept { return flag(detail::socket_option::no_delay); }
    /// Sets SO_KEEPALIVE: the system probes an idle connection (after two
    /// hours by default) and fails it if the peer is gone.
    io_result<void> set_keep_alive(bool on) noexcept
    {
        return handle_.set_option(detail::socket_option::keep_alive, on);
    }
    /// Turns TCP keep-alive on with its timing (SIO_KEEPALIVE_VALS): after
    /// `idle` without traffic the system sends a probe, then one every
    /// `interval` while none is answered, and fails the connection when
    /// too many went unanswered (10 on Windows): pending and later reads
    /// and writes then report an error (connection_reset on Windows). The
    /// system's default is 2 hours of silence, then a probe a second. It
    /// finds a peer whose machine or network is gone, never one whose
    /// program hangs (its kernel still answers): packet_stream's heartbeat
    /// is the application's check (docs/design/heartbeat.md says which to
    /// use when). Under Wine and on Linux the times are rounded to whole
    /// seconds, and Linux takes at most 32,767 s (about 9 hours) of either:
    /// longer is clamped (docs/platform-notes.md). Errors: invalid_argument if either is not
    /// between 1 ms and 2^32 - 1 ms; bad_state if not open; otherwise the
    /// system's. Thread safety: as the other options.
    io_result<void> set_keep_alive(std::chrono::milliseconds idle, std::chrono::milliseconds interval) noexcept
    {
        constexpr std::chrono::milliseconds longest{0xFFFFFFFFLL};
        if (idle.count() < 1 || interval.count() < 1 || idle > longest || interval > longest) {
            return {make_error_code(errc::invalid_argument)};
        }
        return handle_.set_keep_alive_timing(static_cast<unsigned long>(idle.count()),
                                             static_cast<unsigned long>(interval.count()));
    }
    /// Reads SO_KEEPALIVE.
    [[nodiscard]] io_result<bool> keep_alive() const noexcept { return flag(detail::socket_option::keep_alive); }
    /// SO_LINGER: with `on` and 0 seconds, close() resets the connection.
    io_result<void> set_linger(bool on, int seconds) noexcept { return handle_.set_linger(on, seconds); }

    /// Takes ownership of an open, overlapped socket handle (from
    /// tcp_acceptor, or from other code) and associates it with the context;
    /// a socket already open here is closed first. On error the handle is
    /// closed and the socket stays as it was. Errors: from the association.
    io_result<void> assign(native_handle_type native) { return {adopt(detail::backend::socket_handle(native))}; }

    // --- Sending a file: transmit_file (docs/design/files.md) ---

    /// Sends `head`, then `count` bytes of `file` from `offset`, then `tail`,
    /// with the system's file-sending call on Windows (TransmitFile: the
    /// file's bytes go from the file system cache to the connection without
    /// passing through this process), and with reads and sends through a
    /// buffer of 256 KiB on Linux (docs/design/uring.md says why not
    /// splice); no pool thread waits for the disk either way.
    /// `count` may be 0 (only head and tail go) or to_end_of_file (the rest
    /// of the file from `offset`; nothing if `offset` is past the end). The
    /// file must be open for reading; it, and the memory of head and tail,
    /// must outlive the operation. Awaiting yields io_result<uint64_t>: the
    /// bytes sent, head and tail included.
    ///
    /// Errors: eof if the file holds fewer than `count` bytes from `offset`
    /// (checked first: nothing is sent), or if it shrank while being sent
    /// (the bytes say how much went); connection_reset, connection_aborted
    /// (the peer went away: how much it received is unknown);
    /// operation_aborted (cancelled through the stop token, the socket or
    /// the file closed); not_connected; invalid_argument if head or tail is
    /// 4 GiB or more; the file's errors (access_denied...).
    ///
    /// Limits (docs/platform-notes.md): one system call sends at most 1 GiB
    /// of the file, so a larger count takes several, head with the first and
    /// tail with the last. On client editions of Windows the system runs at
    /// most two TransmitFile calls at once, machine-wide, and queues the
    /// rest: portico does nothing about it (a queued call is a pending
    /// operation like any other, cancellable, blocking no thread), so a
    /// server meant to serve many downloads at once belongs on a server
    /// edition. Allocates one frame (recycled); on Linux, one system call's
    /// loop of more than 2 KiB of file takes its buffer's frame (256 KiB)
    /// from the heap.
    ///
    /// `options` sets the file bytes per system call and a time limit for
    /// each call (transmit_file_options; timed_out when one runs over).
    ///
    /// Thread safety: counts as this socket's one pending write.
    [[nodiscard]] task<io_result<std::uint64_t>> transmit_file(const random_access_file& file, std::uint64_t offset,
                                                               std::uint64_t count, const_buffer head = {},
                                                               const_buffer tail = {},
                                                               transmit_file_options options = {})
    {
        return transmit_file_in_calls(file, offset, count, head, tail, options);
    }

private:
    // One system call of transmit_file, with the portable meaning of its
    // result: fewer bytes than asked, without an error, means the file ended.
    class [[nodiscard]] transmit_file_call : public detail::backend::transmit_file_op {
    public:
        using transmit_file_op::transmit_file_op;
        bool await_ready() const noexcept { return requested_ == 0; }
        io_result<std::uint64_t> await_resume() const noexcept
        {
            const std::error_code ec = error();
            if (!ec && bytes_ < requested_) return {make_error_code(errc::eof), bytes_};
            return {ec, bytes_};
        }
    };

    // transmit_file()'s loop of system calls.
    task<io_result<std::uint64_t>> transmit_file_in_calls(const random_access_file& file, std::uint64_t offset,
                                                          std::uint64_t count, const_buffer head, const_buffer tail,
                                                          transmit_file_options options)
    {
        using result = io_result<std::uint64_t>;
        const std::uint64_t per_call =
            options.bytes_per_call == 0 ? detail::backend::max_transmit_file_bytes
                                        : (std::min)(options.bytes_per_call, detail::backend::max_transmit_file_bytes);
        if (head.size() > detail::backend::max_transmit_buffer || tail.size() > detail::backend::max_transmit_buffer) {
            co_return result{make_error_code(errc::invalid_argument), 0};
        }
        if (!is_open() || !file.is_open()) co_return result{make_error_code(errc::operation_aborted), 0};
        // The size once, up front: to_end_of_file needs it, and a count the
        // file cannot fill fails before a byte goes out, so the peer never
        // gets a head that announces more than follows.
        auto [size_ec, size] = file.size();
        if (size_ec) co_return result{size_ec, 0};
        const std::uint64_t available = size > offset ? size - offset : 0;
        if (count == to_end_of_file) {
            count = available;
        } else if (count > available) {
            co_return result{make_error_code(errc::eof), 0};
        }
        std::uint64_t sent = 0;
        for (bool first = true;; first = false) {
            const std::uint64_t part = (std::min)(count, per_call);
            const bool last = part == count;
            // NOTE: the socket's and the file's handles are read again for
            // each call, so one closed between two calls ends the loop
            // (aborted) instead of reaching whatever reuses the value.
            if (!file.is_open()) co_return result{make_error_code(errc::operation_aborted), sent};
            transmit_file_call call{
                ref(), file.ref(), offset, part, first ? head : const_buffer{}, last ? tail : const_buffer{}};
            // NOTE: on timeout the call is cancelled and awaited to its end,
            // so its byte count is what it really sent.
            result done{};
            if (options.call_timeout.count() > 0) {
                done = co_await with_timeout(context(), options.call_timeout, std::move(call));
            } else {
                done = co_await std::move(call);
            }
            const auto [ec, n] = done;
            sent += n;
            if (ec || last) co_return result{ec, sent};
            offset += part;
            count -= part;
        }
    }
};

namespace detail {

/// read_all_op and write_all_op (see there): a stream receive or send
/// (Request) over the first buffers of the sequence, whose completion either
/// resumes the awaiting coroutine or, after a short transfer, starts
/// finish() for the rest and resumes that instead (next_step, called by
/// socket_op on whichever thread the request completed).
template <class Buffer, class Sequence, template <std::size_t, class> class Request>
class [[nodiscard]] transfer_all_op
    : public Request<backend::buffers_for<Buffer, Sequence>, transfer_all_op<Buffer, Sequence, Request>> {
    static constexpr std::size_t most = backend::buffers_for<Buffer, Sequence>;
    using request = Request<most, transfer_all_op>;
    static constexpr bool reads = std::is_same_v<Buffer, mutable_buffer>;

public:
    /// Made by tcp_socket::read_all() or write_all(): the first request
    /// takes the sequence's first buffers (`ref` is the socket's now).
    transfer_all_op(const backend::socket_ref& ref, tcp_socket& socket,
                    Sequence buffers) noexcept(std::is_nothrow_move_constructible_v<Sequence>)
        : request(ref, buffers), socket_(&socket), buffers_(std::move(buffers))
    {}

    /// @name Awaiter protocol
    /// @{

    /// Completes at once when the buffers are empty.
    bool await_ready() const noexcept { return this->requested_ == 0; }

    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        token_ = &detail::stop_token_ref(awaiting);
        // NOTE: once the request is underway (true), the completion may
        // already have resumed the coroutine and destroyed this awaiter.
        if (request::await_suspend(awaiting)) return std::noop_coroutine();
        // Over (or refused) before suspending: a short transfer goes on here.
        return next_step(awaiting);
    }

    /// The result described at read_all_op and write_all_op.
    io_result<std::size_t> await_resume()
    {
        if (rest_.valid()) return rest_.handle().promise().take_result();
        if constexpr (reads) {
            if (!this->error_ && this->bytes_ == 0 && this->requested_ != 0) return {make_error_code(errc::eof), 0};
        }
        return {this->error_, this->bytes_};
    }
    /// @}

private:
    friend backend::socket_op<transfer_all_op>;

    // The coroutine to resume now that the first request is over: the
    // awaiting one, or finish() if bytes are left and nothing stopped it.
    std::coroutine_handle<> next_step(std::coroutine_handle<> awaiting) noexcept
    {
        const std::size_t done = this->bytes_;
        // NOTE: the sequence's size is counted only here, after the
        // request: one buffer's is a load, and the op carries no copy of it.
        if (this->error_ || (reads && done == 0) || done == buffer_size(buffers_)) return awaiting;
        try {
            rest_ = finish(*socket_, buffers_, done);
        } catch (...) {
            // Only the frame's allocation throws here.
            this->error_ = make_error_code(errc::no_resources);
            return awaiting;
        }
        auto& promise = rest_.handle().promise();
        promise.set_continuation(awaiting);
        promise.set_stop_token(*token_);
        return rest_.handle();
    }

    // The rest, after `done` bytes: up to `most` buffers per call, resuming
    // after each short transfer where it stopped. `buffers` is the
    // awaiter's, which outlives this coroutine (it owns its frame).
    static task<io_result<std::size_t>> finish(tcp_socket& socket, const Sequence& buffers, std::size_t done)
    {
        buffer_cursor<Buffer, Sequence> cursor(buffers);
        cursor.consume(done);
        while (!cursor.empty()) {
            std::array<Buffer, most> next;
            const std::size_t count = cursor.prepare(std::span(next));
            auto [ec, n] = co_await next_call(socket, next, count);
            done += n;
            cursor.consume(n);
            if (ec) co_return io_result<std::size_t>{ec, done};
        }
        co_return io_result<std::size_t>{{}, done};
    }

    // One call over the first `count` buffers of `next`: a span of the
    // array's own extent where that is below the most a call takes (its
    // entries past `count` are empty, and calls pass over empty buffers),
    // so the operation is sized for it; else of `count`.
    static auto next_call(tcp_socket& socket, std::array<Buffer, most>& next, std::size_t count)
    {
        auto call = [&socket](const auto& span) {
            if constexpr (reads) {
                return socket.read_some(span);
            } else {
                return socket.write_some(span);
            }
        };
        if constexpr (most < backend::max_buffers) {
            return call(std::span<Buffer, most>(next));
        } else {
            return call(std::span<Buffer>(next.data(), count));
        }
    }

    tcp_socket* socket_;
    Sequence buffers_;
    const portico::stop_token* token_ = nullptr; // the awaiting promise's, for finish()
    task<io_result<std::size_t>> rest_;
};

} // namespace detail

PORTICO_NAMESPACE_END
