// portico: stream_core — the state of a packet_stream, shared by its handle,
// its write driver and its waiting writers: closing, the write side
// (admission, the driver and the kicker), the read side's state, and the
// watchdog that keeps the deadlines and the heartbeat.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/detached.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/flush_state.hpp>
#include <portico/framing/detail/rate_limit.hpp>
#include <portico/framing/detail/receive_ring.hpp>
#include <portico/framing/detail/send_node.hpp>
#include <portico/framing/detail/send_queue.hpp>
#include <portico/framing/detail/stream_watch.hpp>
#include <portico/framing/detail/write_coroutine.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/framing/packet_stream_options.hpp>
#include <portico/framing/send_queue_limits.hpp>
#include <portico/framing/shared_packet.hpp>
#include <portico/framing/stream_concepts.hpp>
#include <portico/stop_token.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
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
/// may call back into the stream. The read side (ring, deadlines, rate,
/// heartbeat) is used by one read_packet() at a time and by the watchdog,
/// never by the driver. The heartbeat's ping and pong are two nodes of the
/// core's own, queued like any packet (so they never interleave with or
/// overtake the others) and reused, so a heartbeat allocates nothing.
template <class Stream>
class stream_core {
public:
    stream_core(Stream s, const packet_stream_options& o)
        : stream(std::move(s)), options(o),
          ring(o.receive_buffer < o.format.header_size() ? o.format.header_size() : o.receive_buffer), watch(o),
          rate(o.max_packets_per_second), queue_(o.send)
    {
        if (watch.heartbeat.enabled()) {
            // Only a stream with a heartbeat pays for its packets.
            heartbeat_packets_ = std::make_unique<heartbeat_packets>();
            prepare_heartbeat_node(heartbeat_packets_->ping, o.heartbeat.ping_type);
            prepare_heartbeat_node(heartbeat_packets_->pong, o.heartbeat.pong_type);
        }
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
    /// asked to stop. Later operations fail with the reason. After kick(),
    /// it stops what kick() left running.
    void close(std::error_code why) noexcept
    {
        resume_list failed;
        bool abort = false;
        {
            std::lock_guard lock(mutex_);
            if (!reason_) {
                reason_ = why;
                closed_.store(true, std::memory_order_release);
                queue_.fail_unsent(why, failed);
            }
            abort = !std::exchange(aborted_, true);
        }
        if (abort) {
            abort_.request_stop();
            read_abort_.request_stop();
        }
        failed.resume_all();
    }

    /// Stops the stream for a limit on what the peer sends (rate, size,
    /// format, deadlines): as close(), but the write in flight is left to
    /// finish, so that a last word (a writer's node marked last_word) may
    /// follow whole packets. The stream is closed for good by close() (the
    /// packet_stream's destructor calls it). A send queue over its limit
    /// closes instead: its write is stalled, and a last word could not pass.
    void kick(std::error_code why) noexcept
    {
        resume_list failed;
        {
            std::lock_guard lock(mutex_);
            if (reason_) return;
            reason_ = why;
            kicked_ = true;
            closed_.store(true, std::memory_order_release);
            queue_.fail_unsent(why, failed);
        }
        read_abort_.request_stop();
        failed.resume_all();
    }

    /// What a read observes: close() and kick() stop it.
    [[nodiscard]] portico::stop_token read_abort_token() const noexcept { return read_abort_.get_token(); }

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
            send_queue::admission admitted = send_queue::admission::refused;
            if (!reason_) {
                admitted = queue_.admit(n, grace_open(n.size));
            } else if (n.last_word && kicked_ && !aborted_) {
                // Only a last word gets past a stop, and only a limit's.
                queue_.force(n);
                admitted = send_queue::admission::queued;
            } else {
                n.result = reason_;
                return false;
            }
            switch (admitted) {
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
        return queue_owned(size, [&](bool grace) noexcept { return queue_.append_copy(header, body, size, grace); });
    }

    /// Queues a reference to `packet` (checked against the format), as
    /// queue_copy() queues a copy. On refusal `packet` is untouched.
    std::error_code queue_shared(shared_packet& packet) noexcept
    {
        return queue_owned(packet.bytes().size() + send_queue::shared_entry_charge,
                           [&](bool grace) noexcept { return queue_.append_shared(packet, grace); });
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

    /// Reader: a whole packet of `type` came in (and passed the rate limit).
    /// True if it is the heartbeat's and read_packet() must not return it: a
    /// pong, or a ping the stream answers itself (queuing a pong unless one
    /// went out less than heartbeat_monitor::shortest_pong_gap() ago). The
    /// pong's write is
    /// deferred as queue_packet's copies are, so it leaves with the reader's
    /// other answers.
    bool consume_heartbeat(std::uint32_t type) noexcept
    {
        auto& h = watch.heartbeat;
        using kind = typename heartbeat_monitor<clock>::kind;
        switch (h.classify(type)) {
        case kind::other: return false;
        case kind::pong: h.pong_received(); return true;
        case kind::ping:
            if (!h.answers_pings()) return false;
            if (h.ping_received()) (void)queue_heartbeat(heartbeat_packets_->pong, false);
            return true;
        }
        return false;
    }

    /// Starts the watchdog once, from the first read_packet(), if a timeout
    /// or the heartbeat is set. It holds a reference on the core until it
    /// ends.
    void start_watchdog()
        requires timed_stream<Stream>
    {
        if (std::exchange(watchdog_started, true) || !watch.enabled()) return;
        watch.start(clock::now());
        detached w = run_watchdog();
        add_ref();
        std::move(w).start(abort_.get_token(), &stream_core::watchdog_ended, this);
    }

    /// Starts the last word's deadline (close_with): at `deadline` the
    /// stream is closed, which fails a last word still waiting. Holds a
    /// reference on the core until the timer ends.
    void arm_last_word(typename clock::time_point deadline)
        requires timed_stream<Stream>
    {
        detached t = run_last_word_timer(deadline);
        add_ref();
        std::move(t).start(last_word_stop_.get_token(), &stream_core::watchdog_ended, this);
    }
    /// Ends the last word's timer early (the word went out, or failed).
    void disarm_last_word() noexcept { last_word_stop_.request_stop(); }
    /// True if the last word's deadline passed before it went out.
    [[nodiscard]] bool last_word_expired() const noexcept { return last_word_expired_.load(std::memory_order_relaxed); }

    /// Reader: true if this wait for the peer is timed, for parking (see
    /// packet_stream_options::park_after); records when it began.
    bool times_wait() noexcept
    {
        if constexpr (parkable_stream<Stream> && timed_stream<Stream>) {
            if (options.park_after.count() <= 0 || ring.size() != 0) return false;
            wait_began_ = clock::now();
            return true;
        } else {
            return false;
        }
    }
    /// Reader: the timed wait ended (bytes, or an error).
    void wait_ended() noexcept
    {
        if constexpr (parkable_stream<Stream> && timed_stream<Stream>) {
            const bool quick = clock::now() - wait_began_ < options.park_after;
            quick_waits_ = quick ? (std::min)(quick_waits_ + 1, busy_after) : 0;
        }
    }
    /// Reader: the stream parks. It gives back the send blocks it kept for
    /// reuse, and those in flight as they return (send_queue::
    /// release_spares): an idle stream holds neither a receive ring nor a
    /// send block (docs/design/memory.md). A lock per park, and a stream
    /// parks only when its peer paused.
    void release_spares() noexcept
    {
        std::lock_guard lock(mutex_);
        queue_.release_spares();
    }
    /// Bytes of send-queue blocks kept for reuse now.
    [[nodiscard]] std::size_t spare_send_bytes() const
    {
        std::lock_guard lock(mutex_);
        return queue_.spare_bytes();
    }
    /// Reader: the last busy_after waits each ended within park_after.
    [[nodiscard]] bool busy() const noexcept { return quick_waits_ >= busy_after; }

    Stream stream;
    const packet_stream_options options;
    // Read side: used by one read_packet() at a time, never by the driver.
    receive_ring ring;
    std::size_t pending = 0;
    std::uint64_t parked_waits = 0;
    bool watchdog_started = false;
    stream_watch<clock> watch;
    rate_limit<clock> rate;

private:
    ~stream_core() = default;

    // Quick waits in a row that make a stream busy: one quick exchange (a
    // login, a lone ping) does not, a conversation does.
    static constexpr unsigned busy_after = 2;
    unsigned quick_waits_ = 0;
    typename clock::time_point wait_began_{};
    /// Makes `n` a header-only packet of `type`, owned by the stream.
    void prepare_heartbeat_node(send_node& n, std::uint32_t type) noexcept
    {
        n.kind = send_node::owner::stream;
        // The type was checked against the format (heartbeat_problem).
        n.header_size = encode_header(options.format, type, 0, n.header).value_unchecked();
        n.size = n.header_size;
    }

    /// Queues the heartbeat's ping or pong `n`, waking the driver at once
    /// (`now`: the watchdog's ping) or late, as queue_packet() does (the
    /// reader's pong). False if it was not queued: the stream stopped, `n`
    /// is still queued from before (it answers for this one too), or the
    /// queue is full (see send_queue::append_own).
    bool queue_heartbeat(send_node& n, bool now) noexcept
    {
        if constexpr (writable_stream<Stream>) {
            bool resume = false;
            bool schedule_kick = false;
            {
                std::lock_guard lock(mutex_);
                if (reason_ || n.place != send_node::where::none || !queue_.append_own(n)) return false;
                if (now) {
                    resume = flush_.write_queued();
                    if (resume) add_ref();
                } else {
                    const flush_state::copy_wake wake = flush_.copy_queued();
                    if (wake.driver) add_ref();
                    if (wake.kick) add_ref();
                    schedule_kick = wake.kick;
                }
            }
            // As start_write(): the driver runs here until its write is
            // pending or the queue is empty.
            if (resume) driver_.resume();
            if (schedule_kick) kick_later();
            return true;
        } else {
            return false;
        }
    }

    /// The common half of queue_copy() and queue_shared(): `append` puts the
    /// packet (charged `charge` bytes) into the queue under the lock; then
    /// the driver is owed a wake and the kicker deferred, as flush_state's
    /// table says.
    template <class Append>
    std::error_code queue_owned(std::size_t charge, Append append) noexcept
    {
        bool schedule_kick = false;
        std::error_code refused;
        {
            std::lock_guard lock(mutex_);
            if (reason_) return reason_;
            switch (append(grace_open(charge))) {
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

    /// Whether a packet charged `charge` bytes that does not fit under the
    /// high watermark may still go in, within the grace (mutex_ held). The
    /// grace starts when the first packet goes over and ends when the driver
    /// drains the queue back to the watermark.
    [[nodiscard]] bool grace_open(std::size_t charge) noexcept
    {
        const send_queue_limits& l = options.send;
        if (l.grace_bytes == 0 || l.grace_period.count() <= 0 || queue_.fits_now(charge)) return false;
        const auto now = clock::now();
        if (!over_since_) over_since_ = now;
        return now - *over_since_ < l.grace_period;
    }

    /// The last word's deadline: closes the stream (which aborts the write in
    /// flight) unless disarm_last_word() ends the sleep first.
    detached run_last_word_timer(typename clock::time_point deadline)
    {
        auto [ec] = co_await stream.context().sleep_until(deadline);
        if (ec) co_return;
        last_word_expired_.store(true, std::memory_order_relaxed);
        close(make_error_code(errc::timed_out));
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
    /// sleeps until the next deadline, closes the stream when the read that
    /// is waiting has run past one or the heartbeat found the peer gone, and
    /// sends the heartbeat's pings. Its sleeps observe the stream's stop
    /// token, so closing the stream ends it. One sleep per wake, whatever
    /// is set: no timer per ping.
    detached run_watchdog()
    {
        for (;;) {
            const auto verdict = watch.check(clock::now());
            if (verdict.expired) {
                kick(verdict.expired);
                co_return;
            }
            if (verdict.ping_due) (void)queue_heartbeat(heartbeat_packets_->ping, true);
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

    /// What write_queued() did: whether it wrote, and the write's result.
    struct write_outcome {
        bool wrote = false;
        std::error_code ec;
        std::size_t n = 0;
    };

    /// One gathering write of what the queue holds. A task of its own so
    /// that the gather list and the write's operation (some 2 KiB) take
    /// memory only while a write runs (a recycled frame), not for the whole
    /// life of an idle stream.
    task<write_outcome> write_queued()
        requires writable_stream<Stream>
    {
        std::array<const_buffer, max_gather_buffers> buffers;
        std::size_t count = 0;
        {
            std::lock_guard lock(mutex_);
            count = queue_.gather(buffers);
            if (count != 0) ++write_calls_;
        }
        if (count == 0) co_return write_outcome{}; // close() took the queue away meanwhile
        auto [ec, n] = co_await stream.write_some(std::span<const_buffer>(buffers.data(), count));
        co_return write_outcome{true, ec, n};
    }

    write_coroutine run_driver()
        requires writable_stream<Stream>
    {
        for (;;) {
            co_await park_op{this};
            write_outcome w;
            {
                std::optional<task<write_outcome>> write;
                try {
                    write.emplace(write_queued());
                } catch (const std::bad_alloc&) {
                    // No memory for the write's frame: the stream fails as
                    // a broken connection would, with its own reason.
                    w = write_outcome{true, std::make_error_code(std::errc::not_enough_memory), 0};
                }
                if (write) {
                    write->set_stop_token(abort_.get_token());
                    w = co_await std::move(*write);
                }
            }
            if (!w.wrote) continue;
            std::error_code ec = w.ec;
            const std::size_t n = w.n;
            // A write that takes nothing and reports nothing would spin.
            if (!ec && n == 0) ec = make_error_code(errc::connection_aborted);
            resume_list done;
            {
                std::lock_guard lock(mutex_);
                queue_.consume(n, done);
                if (over_since_ && !queue_.over_watermark()) over_since_.reset(); // the grace ends
                if (ec) {
                    // The connection is broken (or was closed): every packet
                    // still queued fails with the first reason.
                    if (!reason_) {
                        reason_ = ec;
                        closed_.store(true, std::memory_order_release);
                    }
                    queue_.fail_all(reason_, done);
                    aborted_ = true;
                }
            }
            if (ec) {
                abort_.request_stop();
                read_abort_.request_stop(); // a pending read learns it too
            }
            // NOTE: a resumed writer may destroy the packet_stream; this
            // driver holds its own reference, so the core stays.
            done.resume_all();
        }
    }

    std::atomic<std::size_t> refs_{1};
    mutable std::mutex mutex_;
    // The heartbeat's packets, queued through queue_ (declared first, so
    // that they outlive it); made with the stream if it runs a heartbeat.
    struct heartbeat_packets {
        send_node ping;
        send_node pong;
    };
    std::unique_ptr<heartbeat_packets> heartbeat_packets_;
    send_queue queue_;
    // Who wakes the driver and the kicker, and when (guarded by mutex_).
    flush_state flush_;
    std::error_code reason_;
    // Stopped by a limit: the write side stays for a last word (mutex_).
    bool kicked_ = false;
    // The transport's operations were asked to stop: close(), or a write
    // failed (mutex_).
    bool aborted_ = false;
    // When the queue went over its high watermark, while in a grace (mutex_).
    std::optional<typename clock::time_point> over_since_;
    std::atomic<bool> closed_{false};
    std::uint64_t write_calls_ = 0;
    portico::stop_source abort_;
    portico::stop_source read_abort_;
    portico::stop_source last_word_stop_;
    std::atomic<bool> last_word_expired_{false};
    write_coroutine driver_;
    write_coroutine kicker_;
};

} // namespace detail

PORTICO_NAMESPACE_END
