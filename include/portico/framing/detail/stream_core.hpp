// portico: stream_core — the state of a packet_stream, shared by its handle,
// its write driver and its waiting writers: closing, the write side
// (admission, the driver and the kicker) and the read side's state.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/detached.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/flush_state.hpp>
#include <portico/framing/detail/rate_limit.hpp>
#include <portico/framing/detail/read_deadlines.hpp>
#include <portico/framing/detail/receive_ring.hpp>
#include <portico/framing/detail/send_node.hpp>
#include <portico/framing/detail/send_queue.hpp>
#include <portico/framing/detail/write_coroutine.hpp>
#include <portico/framing/packet_stream_options.hpp>
#include <portico/framing/send_queue_limits.hpp>
#include <portico/framing/shared_packet.hpp>
#include <portico/framing/stream_concepts.hpp>
#include <portico/stop_token.hpp>

#include <array>
#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <span>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The state of a packet_stream, shared by reference count between the
/// packet_stream, its write driver and kicker (while they run), its watchdog
/// and its writers (while they wait): a writer resumed by the driver may
/// destroy the packet_stream, and the driver still has to finish its loop
/// afterwards.
///
/// The write side: writers' packets are admitted by start_write(), copies
/// by queue_copy(); the driver (run_driver) writes the queue and the kicker
/// (run_kicker) wakes it late for copies, as flush_state's table says. One
/// mutex guards the close reason, the send queue, the flush state and the
/// write count; nothing is resumed while it is held, since a resumed writer
/// may call back into the stream. The read side (ring, deadlines, rate) is
/// used by one read_packet() at a time and by the watchdog, never by the
/// driver.
template <class Stream>
class stream_core {
public:
    stream_core(Stream s, const packet_stream_options& o)
        : stream(std::move(s)), options(o),
          ring(o.receive_buffer < o.format.header_size() ? o.format.header_size() : o.receive_buffer),
          deadlines(o.packet_timeout, o.idle_timeout), rate(o.max_packets_per_second), queue_(o.send)
    {
        // A read-only stream has no writes to drive.
        if constexpr (writable_stream<Stream>) {
            driver_ = run_driver();
            driver_.set_stop_token(abort_.get_token());
            kicker_ = run_kicker();
        }
    }

    stream_core(const stream_core&) = delete;
    stream_core& operator=(const stream_core&) = delete;

    void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    /// Drops one reference; the last one destroys the core (and the parked
    /// driver's frame with it).
    void release() noexcept
    {
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// True once close() (or a write error, or a limit) stopped the stream.
    [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
    /// Why the stream stopped; meaningful once closed().
    [[nodiscard]] std::error_code reason() const noexcept
    {
        std::lock_guard lock(mutex_);
        return reason_;
    }

    /// Stops the stream with `why` (the first reason wins): writers not yet
    /// being written fail now, the write in flight and any pending read are
    /// asked to stop. Later operations fail with the reason.
    void close(std::error_code why) noexcept
    {
        resume_list failed;
        {
            std::lock_guard lock(mutex_);
            if (reason_) return;
            reason_ = why;
            closed_.store(true, std::memory_order_release);
            queue_.fail_unsent(why, failed);
        }
        abort_.request_stop();
        failed.resume_all();
    }

    [[nodiscard]] portico::stop_token abort_token() const noexcept { return abort_.get_token(); }

    /// Starts a write of `n` (its size, header and body set) for the writer
    /// suspended in await_suspend. Returns false if the writer must not
    /// suspend: the node was finished already (failed, or written inline).
    template <class Canceller>
    bool start_write(send_node& n, portico::stop_token token, std::optional<portico::stop_callback<Canceller>>& cancel)
    {
        if (token.stop_requested()) {
            n.result = make_error_code(errc::operation_aborted);
            return false;
        }
        bool wake = false;
        // NOTE: once admitted, the node belongs to the queue (the driver may
        // finish it on another thread at once), so refusals are decided in
        // locals and written to the node only while it is still ours.
        std::error_code refused;
        {
            std::lock_guard lock(mutex_);
            if (reason_) {
                n.result = reason_;
                return false;
            }
            switch (queue_.admit(n)) {
            case send_queue::admission::queued:
                wake = flush_.write_queued();
                // The driver holds the core while it runs.
                if (wake) add_ref();
                break;
            case send_queue::admission::blocked: break;
            case send_queue::admission::out_of_memory: // only copies allocate
            case send_queue::admission::refused:
                refused = make_error_code(errc::send_queue_full);
                n.result = refused;
                break;
            }
        }
        if (refused) {
            if (options.send.policy == overflow_policy::disconnect) close(refused);
            return false;
        }
        // May run the canceller at once, which may finish the node.
        if (token.stop_possible()) cancel.emplace(std::move(token), Canceller{this, &n});
        // The driver runs here until its write is pending (or the queue is
        // empty); it may finish this very node.
        if (wake) driver_.resume();
        // RACE: once `running` is published, whoever finishes the node
        // resumes the writer, possibly on another thread at once: this is the
        // last access to the node or the frame.
        return n.handshake.suspend();
    }

    /// Copies a packet (its encoded header, then the body) into the send
    /// queue and returns at once; the driver is woken late enough to take
    /// whatever else the caller queues before it next waits (deferred).
    std::error_code queue_copy(std::span<const std::byte> header, std::span<const const_buffer> body,
                               std::size_t size) noexcept
    {
        return queue_owned([&]() noexcept { return queue_.append_copy(header, body, size); });
    }

    /// Queues a reference to `packet` (checked against the format), as
    /// queue_copy() queues a copy. On refusal `packet` is untouched.
    std::error_code queue_shared(shared_packet& packet) noexcept
    {
        return queue_owned([&]() noexcept { return queue_.append_shared(packet); });
    }

    /// Before a read waits for the peer: copies whose flush is still
    /// deferred go out now, so the answers leave before this stream waits
    /// for the next question (and the deferred kick finds nothing to do).
    void flush_before_wait() noexcept
    {
        {
            std::lock_guard lock(mutex_);
            if (!flush_.take_wake()) return;
        }
        driver_.resume();
    }

    /// A writer's stop request: withdraws its packet if no byte of it is
    /// being written (it then fails with operation_aborted); otherwise the
    /// write in flight decides.
    bool withdraw(send_node& n) noexcept
    {
        resume_list done;
        {
            std::lock_guard lock(mutex_);
            if (!queue_.withdraw(n)) return false;
            done.finish(n, make_error_code(errc::operation_aborted));
        }
        done.resume_all();
        return true;
    }

    /// Takes `n` out of the queue without resuming its writer (whose frame
    /// is being destroyed). False if the node is being written or finished.
    bool withdraw_quietly(send_node& n) noexcept
    {
        std::lock_guard lock(mutex_);
        return queue_.withdraw(n);
    }

    [[nodiscard]] std::size_t queued_bytes() const noexcept
    {
        std::lock_guard lock(mutex_);
        return queue_.charged_bytes();
    }
    [[nodiscard]] std::size_t peak_queued_bytes() const noexcept
    {
        std::lock_guard lock(mutex_);
        return queue_.peak_queued_bytes();
    }
    [[nodiscard]] std::uint64_t write_calls() const noexcept
    {
        std::lock_guard lock(mutex_);
        return write_calls_;
    }

    using clock = typename stream_clock<Stream>::type;

    /// Starts the watchdog once, from the first read_packet(), if a timeout
    /// is set. It holds a reference on the core until it ends.
    void start_watchdog()
        requires timed_stream<Stream>
    {
        if (std::exchange(watchdog_started, true) || !deadlines.enabled()) return;
        detached w = run_watchdog();
        add_ref();
        std::move(w).start(abort_.get_token(), &stream_core::watchdog_ended, this);
    }

    Stream stream;
    const packet_stream_options options;
    // Read side: used by one read_packet() at a time, never by the driver.
    receive_ring ring;
    std::size_t pending = 0;
    bool watchdog_started = false;
    read_deadlines<clock> deadlines;
    rate_limit<clock> rate;

private:
    ~stream_core() = default;

    /// The common half of queue_copy() and queue_shared(): `append` puts the
    /// packet into the queue under the lock; then the driver is owed a wake
    /// and the kicker deferred, as flush_state's table says.
    template <class Append>
    std::error_code queue_owned(Append append) noexcept
    {
        bool schedule_kick = false;
        std::error_code refused;
        {
            std::lock_guard lock(mutex_);
            if (reason_) return reason_;
            switch (append()) {
            case send_queue::admission::queued: {
                const flush_state::copy_wake wake = flush_.copy_queued();
                // The driver holds the core while it runs; a kick holds it
                // too, as a reader may wake the driver first and let it park.
                if (wake.driver) add_ref();
                if (wake.kick) add_ref();
                schedule_kick = wake.kick;
                break;
            }
            case send_queue::admission::out_of_memory: return make_error_code(std::errc::not_enough_memory);
            case send_queue::admission::blocked:
            case send_queue::admission::refused: refused = make_error_code(errc::send_queue_full); break;
            }
        }
        if (refused) {
            if (options.send.policy == overflow_policy::disconnect) close(refused);
            return refused;
        }
        if (schedule_kick) kick_later();
        return {};
    }

    /// Runs the kicker after the current completion handler returns, where
    /// the stream's context can defer (io_context::defer); at once otherwise.
    void kick_later() noexcept
    {
        if constexpr (requires(Stream& s, std::coroutine_handle<> h) { s.context().defer(h); }) {
            try {
                stream.context().defer(kicker_.handle());
                return;
            } catch (...) {
                // The context could not queue it (out of memory): go now.
            }
        }
        kicker_.resume();
    }

    /// The deferred half of queue_copy(): wakes the driver unless a reader
    /// already did (flush_before_wait). The driver itself is never deferred:
    /// a wake that came too late would resume it wherever it then was.
    write_coroutine run_kicker()
    {
        // Each kick resumes it once: from its start, then after kick_done.
        for (;;) {
            bool wake = false;
            {
                std::lock_guard lock(mutex_);
                wake = flush_.take_wake();
            }
            if (wake) driver_.resume();
            co_await kick_done{this};
        }
    }

    /// Suspends the kicker and ends its kick, then drops the reference the
    /// kick held (the last one destroys the core and this suspended frame
    /// with it). If the driver became owed while the kick ran, the kick goes
    /// on instead: the kicker does not suspend and takes that wake too.
    struct kick_done {
        stream_core* core;

        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<>) const noexcept
        {
            stream_core* c = core; // the frame may run again once the kick ends
            {
                std::lock_guard lock(c->mutex_);
                if (!c->flush_.end_kick()) return false;
            }
            // RACE: the next kick may resume the kicker from here on, on any
            // thread; touch only the local copy.
            c->release();
            return true;
        }
        void await_resume() const noexcept {}
    };

    /// Suspends the driver when there is nothing to send. It runs after the
    /// driver is suspended, so a writer may resume it the moment the lock is
    /// released.
    struct park_op {
        stream_core* core;

        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<>) const noexcept
        {
            stream_core* c = core; // the frame may be gone after release()
            {
                std::lock_guard lock(c->mutex_);
                if (c->queue_.has_unsent()) return false;
                c->flush_.park();
            }
            // RACE: a writer may resume the driver from here on; touch only
            // the local copy. The last reference destroys the core and this
            // suspended frame with it.
            c->release();
            return true;
        }
        void await_resume() const noexcept {}
    };

    /// The watchdog: a detached coroutine (it frees its own frame) that
    /// sleeps until the next deadline and closes the stream when the read
    /// that is waiting has run past one. Its sleeps observe the stream's stop
    /// token, so closing the stream ends it.
    detached run_watchdog()
    {
        for (;;) {
            const auto verdict = deadlines.check(clock::now());
            if (verdict.expired) {
                close(verdict.expired);
                co_return;
            }
            auto [ec] = co_await stream.context().sleep_until(verdict.next);
            if (ec || closed()) co_return;
        }
    }

    /// The watchdog's end hook, once its frame is gone: it throws nothing
    /// (an escape is a bug), and drops its reference.
    static void watchdog_ended(void* self, std::exception_ptr error) noexcept
    {
        terminate_on_error(std::move(error));
        static_cast<stream_core*>(self)->release();
    }

    write_coroutine run_driver()
        requires writable_stream<Stream>
    {
        for (;;) {
            co_await park_op{this};
            std::array<const_buffer, max_gather_buffers> buffers;
            std::size_t count = 0;
            {
                std::lock_guard lock(mutex_);
                count = queue_.gather(buffers);
                if (count != 0) ++write_calls_;
            }
            if (count == 0) continue; // close() took the queue away meanwhile
            auto [ec, n] = co_await stream.write_some(std::span<const_buffer>(buffers.data(), count));
            // A write that takes nothing and reports nothing would spin.
            if (!ec && n == 0) ec = make_error_code(errc::connection_aborted);
            resume_list done;
            {
                std::lock_guard lock(mutex_);
                queue_.consume(n, done);
                if (ec) {
                    // The connection is broken (or was closed): every packet
                    // still queued fails with the first reason.
                    if (!reason_) {
                        reason_ = ec;
                        closed_.store(true, std::memory_order_release);
                    }
                    queue_.fail_all(reason_, done);
                }
            }
            if (ec) abort_.request_stop(); // a pending read learns it too
            // NOTE: a resumed writer may destroy the packet_stream; this
            // driver holds its own reference, so the core stays.
            done.resume_all();
        }
    }

    std::atomic<std::size_t> refs_{1};
    mutable std::mutex mutex_;
    send_queue queue_;
    // Who wakes the driver and the kicker, and when (guarded by mutex_).
    flush_state flush_;
    std::error_code reason_;
    std::atomic<bool> closed_{false};
    std::uint64_t write_calls_ = 0;
    portico::stop_source abort_;
    write_coroutine driver_;
    write_coroutine kicker_;
};

} // namespace detail

PORTICO_NAMESPACE_END
