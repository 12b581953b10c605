// portico: stream_core — the state of a packet_stream, shared by its handle,
// its write driver and its waiting writers; the write side's admission and
// flush.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/flush_state.hpp>
#include <portico/framing/detail/receive_ring.hpp>
#include <portico/framing/detail/send_node.hpp>
#include <portico/framing/detail/send_queue.hpp>
#include <portico/framing/detail/watchdog.hpp>
#include <portico/framing/detail/write_coroutine.hpp>
#include <portico/framing/packet_stream_options.hpp>
#include <portico/framing/send_queue_limits.hpp>
#include <portico/framing/stream_concepts.hpp>
#include <portico/stop_token.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The state of a packet_stream, shared by reference count between the
/// packet_stream, its write driver (while it runs) and its writers (while
/// they wait): a writer resumed by the driver may destroy the packet_stream,
/// and the driver still has to finish its loop afterwards.
template <class Stream>
class stream_core {
public:
    stream_core(Stream s, const packet_stream_options& o)
        : stream(std::move(s)), options(o),
          ring(o.receive_buffer < o.format.header_size() ? o.format.header_size() : o.receive_buffer), queue_(o.send)
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
        bool schedule_kick = false;
        std::error_code refused;
        {
            std::lock_guard lock(mutex_);
            if (reason_) return reason_;
            switch (queue_.append_copy(header, body, size)) {
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
        return queue_.queued_bytes();
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
    static constexpr std::int64_t never = (std::numeric_limits<std::int64_t>::min)();

    static std::int64_t ticks(typename clock::time_point t) noexcept
    {
        return static_cast<std::int64_t>(t.time_since_epoch().count());
    }
    static typename clock::time_point time_of(std::int64_t t) noexcept
    {
        return typename clock::time_point(typename clock::duration(t));
    }

    [[nodiscard]] bool has_timeouts() const noexcept
    {
        return options.packet_timeout.count() > 0 || options.idle_timeout.count() > 0;
    }

    /// Starts the watchdog once, from the first read_packet().
    void start_watchdog()
        requires timed_stream<Stream>
    {
        if (std::exchange(watchdog_started, true) || !has_timeouts()) return;
        watchdog w = run_watchdog();
        add_ref();
        std::move(w).start(abort_.get_token(), this,
                           [](void* self) noexcept { static_cast<stream_core*>(self)->release(); });
    }

    /// The packets-per-second check, for one packet received now (GCRA: a
    /// packet may arrive at most `burst` intervals ahead of the steady rate).
    [[nodiscard]] bool within_rate(typename clock::time_point now) noexcept
    {
        const auto limit = options.max_packets_per_second;
        if (limit == 0) return true;
        const auto interval = std::chrono::duration_cast<typename clock::duration>(std::chrono::seconds(1)) / limit;
        const auto tolerance = interval * (limit - 1);
        auto expected = time_of(rate_expected);
        if (rate_expected == never || expected < now) expected = now;
        if (expected - now > tolerance) return false;
        rate_expected = ticks(expected + interval);
        return true;
    }

    Stream stream;
    const packet_stream_options options;
    // Read side: used by one read_packet() at a time, never by the driver.
    receive_ring ring;
    std::size_t pending = 0;
    bool watchdog_started = false;
    std::int64_t rate_expected = never;
    // Read-side times for the watchdog, in clock ticks (`never`: not set):
    // when the pending read started, when the packet in progress was first
    // waited on, when bytes last arrived.
    std::atomic<std::int64_t> waiting_since{never};
    std::atomic<std::int64_t> packet_start{never};
    std::atomic<std::int64_t> last_receive{never};

private:
    ~stream_core() = default;

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

    /// Wakes at the earliest deadline, or after the shortest timeout at the
    /// latest (a packet that starts meanwhile gets its full time: its
    /// deadline cannot come sooner), and closes the stream when the read
    /// that is waiting has run past one.
    watchdog run_watchdog()
    {
        const auto packet_limit = std::chrono::duration_cast<typename clock::duration>(options.packet_timeout);
        const auto idle_limit = std::chrono::duration_cast<typename clock::duration>(options.idle_timeout);
        auto step = packet_limit.count() > 0 ? packet_limit : idle_limit;
        if (idle_limit.count() > 0 && idle_limit < step) step = idle_limit;
        for (;;) {
            const auto now = clock::now();
            auto next = now + step;
            const std::int64_t since = waiting_since.load(std::memory_order_acquire);
            if (since != never) {
                const std::int64_t started = packet_start.load(std::memory_order_acquire);
                if (packet_limit.count() > 0 && started != never) {
                    const auto deadline = time_of(started) + packet_limit;
                    if (deadline <= now) {
                        close(make_error_code(errc::timed_out));
                        co_return;
                    }
                    if (deadline < next) next = deadline;
                }
                if (idle_limit.count() > 0) {
                    // Idle counts only while a read waits: a busy reader does
                    // not make its peer idle.
                    const std::int64_t last = last_receive.load(std::memory_order_acquire);
                    const auto deadline = time_of(last != never && last > since ? last : since) + idle_limit;
                    if (deadline <= now) {
                        close(make_error_code(errc::idle_timeout));
                        co_return;
                    }
                    if (deadline < next) next = deadline;
                }
            }
            auto [ec] = co_await stream.context().sleep_until(next);
            if (ec || closed()) co_return;
        }
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
