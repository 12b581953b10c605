// portico: packet_stream — read_packet() and write_packet() over any byte
// stream.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/task.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/receive_ring.hpp>
#include <portico/framing/detail/send_node.hpp>
#include <portico/framing/detail/stream_core.hpp>
#include <portico/framing/detail/write_packet_base.hpp>
#include <portico/framing/heartbeat_options.hpp>
#include <portico/framing/packet.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/framing/packet_stream_options.hpp>
#include <portico/framing/shared_packet.hpp>
#include <portico/framing/stream_concepts.hpp>
#include <portico/framing/write_packet_op.hpp>
#include <portico/stop_token.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Framed packets over a byte stream.
///
/// read_packet() yields the next packet as a view into the stream's receive
/// ring: no copy and no allocation in the common case. The receive ring is
/// filled by one scatter read into its free space, so a burst of small
/// packets costs one read.
///
/// write_packet() queues a packet without copying its body; any number of
/// writers on any threads may call it at once. One internal driver
/// coroutine writes the queue, gathering every pending packet (up to 64
/// buffers) into each write, so packets never interleave and a burst of
/// packets costs one write. queue_packet() copies instead and returns at
/// once, for answering many packets with one write; queue_packet() of a
/// shared_packet queues a reference, for broadcast. See
/// docs/design/framing.md.
///
/// With options().heartbeat set, the stream also asks a silent peer "are
/// you alive?", answers the peer's pings, and closes with heartbeat_timeout
/// when the peer gives no sign of life (docs/design/heartbeat.md).
///
/// packet_stream is a handle (movable) to a reference-counted state; it must
/// outlive every read_packet() it started. Destroying it closes the stream:
/// writers still queued fail with operation_aborted.
///
/// Thread safety: one read_packet() at a time; write_packet() and
/// queue_packet() from any number of threads at once; close() from any
/// thread. Other members must not race with each other.
template <class Stream>
    requires readable_stream<Stream>
class packet_stream {
public:
    /// Frames `stream` with the given options (their format must be
    /// valid()). Throws std::invalid_argument, saying why, if the heartbeat
    /// cannot run as set (heartbeat_problem()) or is set on a stream this
    /// type cannot write to; std::bad_alloc if the state cannot be
    /// allocated.
    packet_stream(Stream stream, const packet_stream_options& options)
        : core_(new detail::stream_core<Stream>(std::move(stream), checked(options)))
    {}
    /// Frames `stream` with `format` and default limits.
    packet_stream(Stream stream, const packet_format& format)
        : packet_stream(std::move(stream), packet_stream_options{.format = format})
    {}
    /// Frames `stream` with the default format (u16 size including the
    /// header, u16 type, little-endian) and default limits.
    explicit packet_stream(Stream stream) : packet_stream(std::move(stream), packet_stream_options{}) {}

    /// Takes over the stream of `other`, which is left empty: is_closed() is
    /// true, close() does nothing, write_packet() and queue_packet() fail with
    /// bad_state; other members must not be called on it until it is assigned
    /// to.
    packet_stream(packet_stream&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
    /// Closes this stream (as the destructor does) and takes over the stream
    /// of `other`, which is left empty as after a move construction.
    packet_stream& operator=(packet_stream&& other) noexcept
    {
        if (this != &other) {
            reset();
            core_ = std::exchange(other.core_, nullptr);
        }
        return *this;
    }
    ~packet_stream() { reset(); }

    /// The underlying stream (for options and endpoints; reading or writing
    /// it directly would corrupt the framing).
    [[nodiscard]] Stream& next_layer() noexcept { return core_->stream; }
    /// The packet format.
    [[nodiscard]] const packet_format& format() const noexcept { return core_->options.format; }
    /// All options.
    [[nodiscard]] const packet_stream_options& options() const noexcept { return core_->options; }

    /// Reads the next packet. Its body stays valid until the next
    /// read_packet(). With a heartbeat, pings and pongs are consumed here
    /// and never returned (a ping is answered with a pong, at most one per
    /// 100 ms), except pings when options().heartbeat.answer_pings is
    /// false, which are returned for the caller to answer; a ping or pong
    /// with a body is taken as one without (the body is dropped). Errors:
    ///   eof               the stream ended cleanly between packets;
    ///   packet_truncated  the stream ended inside a packet;
    ///   packet_too_large, packet_malformed  from the header, before its body
    ///                     is read or anything allocated (the stream closes);
    ///   timed_out         a packet took longer than options().packet_timeout;
    ///   idle_timeout      the peer sent nothing (but pings and pongs) for
    ///                     options().idle_timeout;
    ///   heartbeat_timeout the peer gave no sign of life for
    ///                     options().heartbeat.timeout;
    ///   rate_limited      over options().max_packets_per_second;
    ///   invalid_argument  timeouts or a heartbeat configured on a stream
    ///                     without a clock (not a timed_stream);
    ///   the close reason  after close() or a limit stopped the stream
    ///                     (operation_aborted, send_queue_full...);
    ///   anything the stream reports (connection_reset...).
    /// A stop request on the awaiting coroutine closes the stream with
    /// operation_aborted (a packet cut in the middle cannot be resumed
    /// reliably). After any error the stream should be dropped. Allocates a
    /// coroutine frame per call and per read (recycled; see
    /// docs/design/frames.md).
    [[nodiscard]] task<io_result<packet>> read_packet()
    {
        using core_type = detail::stream_core<Stream>;
        core_type& c = *core_;
        if (c.closed()) co_return io_result<packet>{c.reason(), {}};
        if constexpr (timed_stream<Stream>) {
            c.start_watchdog();
        } else if (c.watch.enabled()) {
            co_return io_result<packet>{make_error_code(errc::invalid_argument), {}};
        }
        // The previous packet's bytes are released only now: its view was
        // valid until this call.
        c.ring.consume(std::exchange(c.pending, 0));
        // The reads below observe only the stream's own stop token (close);
        // the caller's stop request reaches them by closing the stream.
        std::optional<portico::stop_callback<closer>> on_stop;
        if (auto token = co_await get_stop_token(); token.stop_possible())
            on_stop.emplace(std::move(token), closer{&c});
        // NOTE: a wait after the first of this call follows a receive whose
        // whole packets were all pings and pongs, consumed below; if nothing
        // of a packet is left over either, the peer's silence goes on.
        bool first_wait = true;
        for (;;) {
            auto [ec, next] = detail::next_packet(c.options.format, c.ring);
            if (ec) {
                // A hostile or broken header: this stream is done, and its
                // writers and later calls learn why (close_with may still
                // send a last word).
                c.kick(ec);
                co_return io_result<packet>{c.reason(), {}};
            }
            if (next) {
                c.pending = detail::packet_size(c.options.format, *next);
                c.watch.deadlines.packet_complete();
                if (c.rate.enabled() && !c.rate.admit(core_type::clock::now())) {
                    c.kick(make_error_code(errc::rate_limited));
                    co_return io_result<packet>{c.reason(), {}};
                }
                if (!c.watch.heartbeat.enabled() || !c.consume_heartbeat(next->type)) {
                    co_return io_result<packet>{{}, *next};
                }
                c.ring.consume(std::exchange(c.pending, 0));
                continue;
            }
            if constexpr (writable_stream<Stream>) c.flush_before_wait();
            c.watch.wait_begins(c.ring.size() != 0, !std::exchange(first_wait, false) && c.ring.size() == 0);
            [[maybe_unused]] const bool timing = c.times_wait();
            if constexpr (parkable_stream<Stream> && timed_stream<Stream>) {
                if (timing && !c.busy() && c.ring.release()) {
                    // Parked: the peer is quiet, so wait for its next bytes
                    // holding no ring (docs/design/memory.md).
                    ++c.parked_waits;
                    c.release_spares();
                    auto wait = wait_readable(c.stream);
                    wait.set_stop_token(c.read_abort_token());
                    auto [wait_ec] = co_await std::move(wait);
                    if (wait_ec) {
                        c.watch.wait_ends(false);
                        if (c.closed()) wait_ec = c.reason();
                        co_return io_result<packet>{wait_ec, {}};
                    }
                }
            }
            // Two regions at most (the ring's free space may wrap); a fixed
            // extent lets the stream's receive carry room for two buffers
            // only, and an unused one stays empty.
            std::array<mutable_buffer, 2> regions{};
            (void)c.ring.prepare(regions);
            auto read = read_some(c.stream, std::span<mutable_buffer, 2>(regions));
            read.set_stop_token(c.read_abort_token());
            auto [read_ec, n] = co_await std::move(read);
            c.watch.wait_ends(n != 0);
            if (timing) c.wait_ended();
            if (read_ec) {
                if (c.closed()) read_ec = c.reason();
                if (read_ec == errc::eof && c.ring.size() != 0) read_ec = make_error_code(errc::packet_truncated);
                co_return io_result<packet>{read_ec, {}};
            }
            c.ring.commit(n);
        }
    }

    /// Queues a packet of `type` whose body is the concatenation of `body`
    /// (buffers, or anything buffer() accepts, such as a packet's body or a
    /// std::string): header and body go out in one gather write, the body
    /// is not copied and must stay alive until the write completes. A string
    /// literal does not compile (its '\0' would be sent too): write
    /// std::string_view("hello").
    ///
    /// Yields io_result<void> once the whole packet was handed to the kernel
    /// (or failed). Errors: packet_too_large (over the format's maximum) and
    /// invalid_argument (type too wide), with nothing sent; send_queue_full
    /// with the fail or disconnect policy; operation_aborted if this writer's
    /// stop token fired before any byte of the packet was written, or the
    /// stream was closed; the close reason or the stream's error after the
    /// stream failed. Never allocates; safe from any number of threads.
    template <class... Body>
        requires(detail::body_buffer<Body> && ...)
    [[nodiscard]] write_packet_op<Stream, sizeof...(Body)> write_packet(std::uint32_t type,
                                                                        const Body&... body) noexcept
        requires writable_stream<Stream>
    {
        return {core_, type, std::array<const_buffer, sizeof...(Body)>{const_buffer(buffer(body))...}};
    }

    /// As write_packet(type, body...), with the body given as an array of
    /// buffers that must stay alive until the write completes.
    [[nodiscard]] write_packet_gather_op<Stream> write_packet(std::uint32_t type,
                                                              std::span<const const_buffer> body) noexcept
        requires writable_stream<Stream>
    {
        return {core_, type, body};
    }

    /// Queues a packet encoded once by shared_packet::make, for broadcast:
    /// no copy per stream. Its format must match this stream's header layout
    /// (invalid_argument) and its size this stream's maximum
    /// (packet_too_large). Otherwise as write_packet(type, body...).
    [[nodiscard]] write_shared_op<Stream> write_packet(shared_packet packet) noexcept
        requires writable_stream<Stream>
    {
        return {core_, std::move(packet)};
    }

    /// Copies a packet of `type` with the concatenation of `body` into the
    /// send queue and returns at once, without waiting for the kernel: the
    /// caller's buffers may be reused as soon as it returns. Copies queued
    /// one after another (an echo or a game tick answering many packets)
    /// leave together in one write: on a pool thread the write starts once
    /// the completion being handled returns (io_context::defer), so what the
    /// handler queues before it next waits is gathered at once.
    ///
    /// Order is kept with write_packet(): a write_packet() awaited after
    /// queue_packet() calls resumes only after their bytes went out too
    /// (which is how to send a last word before close()). Copies still
    /// queued when the stream closes are dropped.
    ///
    /// Errors (the packet is not queued): packet_too_large, invalid_argument
    /// as write_packet(); send_queue_full over the high watermark or while
    /// writers wait for room, whatever the policy (a copy cannot wait; the
    /// disconnect policy also closes the stream); the close reason once the
    /// stream stopped; not_enough_memory. Allocates only when the queue
    /// needs more of its 4 KiB blocks than it keeps for reuse. Safe from any
    /// number of threads.
    template <class... Body>
        requires(detail::body_buffer<Body> && ...)
    std::error_code queue_packet(std::uint32_t type, const Body&... body) noexcept
        requires writable_stream<Stream>
    {
        const std::array<const_buffer, sizeof...(Body)> parts{const_buffer(buffer(body))...};
        return queue_packet(type, std::span<const const_buffer>(parts));
    }

    /// As queue_packet(type, body...), with the body as an array of buffers.
    std::error_code queue_packet(std::uint32_t type, std::span<const const_buffer> body) noexcept
        requires writable_stream<Stream>
    {
        if (core_ == nullptr) return make_error_code(errc::bad_state);
        std::array<std::byte, detail::max_header_size> header;
        const std::size_t body_size = buffer_size(body);
        auto [ec, header_size] = encode_header(core_->options.format, type, body_size, header);
        if (ec) return ec;
        return core_->queue_copy(std::span<const std::byte>(header.data(), header_size), body, header_size + body_size);
    }

    /// Queues a packet encoded once by shared_packet::make and returns at
    /// once, for broadcast: no copy, no coroutine and no allocation per
    /// stream (the queue keeps a reference in a chunk it reuses), so one
    /// make() and a queue_packet() per recipient is the cheapest fan-out.
    /// The bytes leave in order with this stream's other packets, gathered
    /// with them, as queue_packet(type, body...) copies do.
    ///
    /// Against the watermarks a shared packet counts its bytes plus a fixed
    /// charge for its queue entry and its block (a few dozen bytes; see
    /// queued_bytes()), so a recipient that stopped reading pins at most
    /// about the high watermark of memory however small the packets are.
    ///
    /// Errors (the packet is not queued and `packet` keeps its reference):
    /// invalid_argument if it is empty or its header layout is not this
    /// stream's; packet_too_large over this stream's maximum; send_queue_full
    /// over the high watermark or while writers wait for room, whatever the
    /// policy (the disconnect policy also closes the stream); the close
    /// reason once the stream stopped; not_enough_memory. Safe from any
    /// number of threads.
    std::error_code queue_packet(const shared_packet& packet) noexcept
        requires writable_stream<Stream>
    {
        if (core_ == nullptr) return make_error_code(errc::bad_state);
        if (auto ec = detail::shared_packet_mismatch(core_->options.format, packet)) return ec;
        shared_packet reference = packet;
        return core_->queue_shared(reference);
    }

    /// Stops the stream and sends `last` as its final packet, waiting at most
    /// `timeout` for it to be handed to the kernel, then closes the stream:
    /// for a server that tells a client why it is cut off ("kicked:
    /// flooding"). Meant for after a limit on what the peer sends tripped: a
    /// stream stopped by rate_limited, packet_too_large, packet_malformed,
    /// timed_out, idle_timeout or heartbeat_timeout keeps its write side for
    /// this one packet, whatever the watermarks (the write in flight when the
    /// limit tripped is left to finish, so that the last word follows whole
    /// packets; writers waiting on it wait until it does or the stream is
    /// closed). A
    /// send queue cut off by the disconnect policy has closed the stream (a
    /// peer that does not read cannot be told): this yields the close reason.
    /// On a stream still open it stops it first, with operation_aborted.
    /// Either way, packets queued and not yet being written are dropped, so
    /// `last` goes out right after the bytes already in flight; to send
    /// everything queued first, await a write_packet() and then call this.
    /// For a burst above the watermark, see send_queue_limits::grace_bytes.
    ///
    /// Once `last` is out, a stream that can (tcp_socket::shutdown_send)
    /// sends the end of the stream too, so the peer reads the last word and
    /// then eof without waiting for this packet_stream to be destroyed.
    ///
    /// Yields io_result<void>: no error once `last` was handed to the kernel;
    /// timed_out if it was not within `timeout` (a peer that stopped
    /// reading); invalid_argument or packet_too_large if `last` does not
    /// suit this stream's format (nothing sent); the close reason if the
    /// stream was closed by close() or broke first (nothing sent). The close
    /// reason reported to everyone else stays the first one (the limit's).
    /// Any thread; once per stream.
    [[nodiscard]] task<io_result<void>> close_with(shared_packet last, std::chrono::milliseconds timeout)
        requires writable_stream<Stream> && timed_stream<Stream>
    {
        using core_type = detail::stream_core<Stream>;
        if (core_ == nullptr) co_return io_result<void>{make_error_code(errc::bad_state)};
        core_type& c = *core_;
        c.kick(make_error_code(errc::operation_aborted));
        if (auto mismatch = detail::shared_packet_mismatch(c.options.format, last)) {
            c.close(mismatch);
            co_return io_result<void>{mismatch};
        }
        c.arm_last_word(core_type::clock::now() + timeout);
        auto [ec] = co_await write_shared_op<Stream>(core_, std::move(last), detail::last_word_tag{});
        c.disarm_last_word();
        // NOTE: a deadline that passed closed the stream, which aborted the
        // write: that is a timeout, whatever error the write then reported.
        if (ec && c.last_word_expired()) ec = make_error_code(errc::timed_out);
        if constexpr (requires(Stream& s) { s.shutdown_send(); }) {
            // The peer reads the last word, then the end of the stream, now
            // rather than when this stream is destroyed. Nothing else writes:
            // the queue ended with the last word.
            if (!ec) (void)c.stream.shutdown_send();
        }
        c.close(make_error_code(errc::operation_aborted));
        co_return io_result<void>{ec};
    }

    /// Stops the stream: pending and later reads and writes fail with
    /// operation_aborted (writers whose packet is partly written wait for
    /// that write to be cancelled). The stream itself is closed when the
    /// packet_stream and its last writer are gone. Idempotent; any thread.
    void close() noexcept { close(make_error_code(errc::operation_aborted)); }

    /// As close(), with `reason` reported to every pending and later
    /// operation (the first reason wins).
    void close(std::error_code reason) noexcept
    {
        if (core_ != nullptr) core_->close(reason);
    }

    /// True once the stream was stopped by close(), a limit or a write error.
    [[nodiscard]] bool is_closed() const noexcept { return core_ == nullptr || core_->closed(); }
    /// Why the stream stopped (no error while it runs).
    [[nodiscard]] std::error_code close_reason() const noexcept
    {
        return core_ == nullptr || !core_->closed() ? std::error_code{} : core_->reason();
    }

    /// Bytes counted against the send queue's watermarks: packets accepted
    /// by write_packet or queue_packet and not yet taken by the kernel (a
    /// block of copies, or a chunk of shared packets, counts whole until it
    /// is sent whole), plus a fixed charge for each shared packet queued
    /// (its entry and its block's header); never above the high watermark
    /// (or one packet larger than it).
    [[nodiscard]] std::size_t queued_bytes() const noexcept { return core_->queued_bytes(); }
    /// The most queued_bytes() has been.
    [[nodiscard]] std::size_t peak_queued_bytes() const noexcept { return core_->peak_queued_bytes(); }
    /// Writes issued by the driver so far (each gathers one or more packets).
    [[nodiscard]] std::uint64_t write_calls() const noexcept { return core_->write_calls(); }
    /// Waits for the peer made without a receive ring (options().park_after):
    /// each is one zero-byte receive before the read. Not synchronised with
    /// a read_packet() in progress.
    [[nodiscard]] std::uint64_t parked_waits() const noexcept { return core_->parked_waits; }
    /// Bytes the receive ring holds now: 0 while parked (and before the
    /// first read), twice receive_buffer otherwise, more while a large
    /// packet is in. Not synchronised with a read_packet() in progress.
    [[nodiscard]] std::size_t receive_storage_bytes() const noexcept { return core_->ring.storage_bytes(); }
    /// Bytes of send blocks kept for the next queue_packet() copies (at most
    /// four blocks of 4 KiB and two chunks of shared-packet references, once
    /// sent). A stream that parks frees them, and the ones in flight as they
    /// return, so one quiet both ways keeps none. Thread-safe.
    [[nodiscard]] std::size_t spare_send_bytes() const { return core_->spare_send_bytes(); }

private:
    // The options, if this stream can run them (the constructor's check).
    static const packet_stream_options& checked(const packet_stream_options& options)
    {
        if (const char* problem = heartbeat_problem(options.heartbeat, options.format)) {
            throw std::invalid_argument(problem);
        }
        if (options.heartbeat.enabled() && !writable_stream<Stream>) {
            throw std::invalid_argument("heartbeat: the stream cannot be written to (no pings, no pongs)");
        }
        return options;
    }

    // A task of its own so that it can carry the stream's stop token.
    static task<io_result<std::size_t>> read_some(Stream& stream, std::span<mutable_buffer, 2> regions)
    {
        co_return co_await stream.read_some(regions);
    }

    // As read_some(), for the zero-byte wait of a parked stream.
    static task<io_result<void>> wait_readable(Stream& stream)
        requires parkable_stream<Stream>
    {
        co_return co_await stream.wait_readable();
    }

    struct closer {
        detail::stream_core<Stream>* core;
        void operator()() const noexcept { core->close(make_error_code(errc::operation_aborted)); }
    };

    void reset() noexcept
    {
        if (core_ == nullptr) return;
        core_->close(make_error_code(errc::operation_aborted));
        std::exchange(core_, nullptr)->release();
    }

    detail::stream_core<Stream>* core_;
};

PORTICO_NAMESPACE_END
