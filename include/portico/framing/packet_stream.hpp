// portico: packet_stream — read_packet() and write_packet() over any byte
// stream.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/stop_token.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/frame_tracking.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/receive_ring.hpp>
#include <portico/framing/packet.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/framing/detail/send_node.hpp>
#include <portico/framing/detail/send_queue.hpp>
#include <portico/framing/send_queue_limits.hpp>
#include <portico/framing/shared_packet.hpp>
#include <portico/stop_token.hpp>

#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// What packet_stream needs of a stream for reading: `read_some` of a span
/// of mutable_buffers, awaitable, yielding io_result<size_t> with eof at the
/// end (tcp_socket; a mock stream in tests).
template <class S>
concept readable_stream = requires(S& s, std::span<mutable_buffer> buffers) {
    { s.read_some(buffers) } -> awaitable;
};

/// What write_packet needs: `write_some` of a span of const_buffers,
/// awaitable, yielding io_result<size_t> (the bytes taken, possibly fewer
/// than offered).
template <class S>
concept writable_stream = requires(S& s, std::span<const_buffer> buffers) {
    { s.write_some(buffers) } -> awaitable;
};

/// What packet_stream needs of a stream for its timeouts: `context()` with
/// a `clock` and an awaitable `sleep_until(clock::time_point)` that yields
/// io_result<void> and observes the stop token (tcp_socket's io_context; a
/// manual clock in tests).
template <class S>
concept timed_stream = requires(S& s) {
    typename std::remove_cvref_t<decltype(s.context())>::clock;
    { s.context().sleep_until(std::remove_cvref_t<decltype(s.context())>::clock::now()) } -> awaitable;
};

/// How a packet_stream frames and guards its stream. Every limit that trips
/// closes only this stream, with its own error (see packet_stream).
struct packet_stream_options {
    /// The header of every packet, and the largest packet accepted or sent.
    packet_format format{};
    /// Initial size of the receive ring (it grows for a larger packet once
    /// that packet's header passed the size check).
    std::size_t receive_buffer = 4096;
    /// Watermarks and overflow policy of the send queue.
    send_queue_limits send{};
    /// The longest one packet may take to arrive, from the moment its first
    /// bytes are waited on to its last byte; bytes trickling in do not
    /// extend it (slowloris). Tripping it closes the stream with timed_out.
    /// Zero: no limit.
    std::chrono::milliseconds packet_timeout{0};
    /// The longest the peer may send nothing while read_packet() waits.
    /// Tripping it closes the stream with idle_timeout. Zero: no limit.
    std::chrono::milliseconds idle_timeout{0};
    /// The most packets per second the peer may send, averaged, with bursts
    /// of up to this many. Going over closes the stream with rate_limited.
    /// Zero: no limit.
    std::uint32_t max_packets_per_second = 0;
};

namespace detail {

/// The coroutine that performs a packet_stream's writes (see
/// docs/design/framing.md): started when a packet arrives at an idle queue,
/// parked when the queue is empty. It is nobody's caller, so no writer waits
/// for other writers' packets, and its operations observe only the stream's
/// own stop token (close), never a writer's.
class write_driver {
public:
    struct promise_type : frame_allocation {
        portico::stop_token token;

        write_driver get_return_object() noexcept
        {
            return write_driver{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        std::suspend_always final_suspend() const noexcept { return {}; }
        void return_void() const noexcept {}
        // The body catches nothing that can throw; an escape is a bug.
        void unhandled_exception() const noexcept { std::terminate(); }
        [[nodiscard]] const portico::stop_token& stop_token() const noexcept { return token; }
    };

    write_driver() noexcept = default;
    explicit write_driver(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    write_driver(write_driver&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    write_driver& operator=(write_driver&& other) noexcept
    {
        std::swap(handle_, other.handle_);
        return *this;
    }
    ~write_driver()
    {
        if (handle_) handle_.destroy();
    }

    [[nodiscard]] explicit operator bool() const noexcept { return static_cast<bool>(handle_); }
    void resume() const { handle_.resume(); }
    [[nodiscard]] std::coroutine_handle<> handle() const noexcept { return handle_; }
    void set_stop_token(portico::stop_token token) noexcept { handle_.promise().token = std::move(token); }

private:
    std::coroutine_handle<promise_type> handle_;
};

template <class Stream>
struct stream_clock {
    using type = std::chrono::steady_clock;
};
template <class Stream>
    requires timed_stream<Stream>
struct stream_clock<Stream> {
    using type = typename std::remove_cvref_t<decltype(std::declval<Stream&>().context())>::clock;
};

/// The detached coroutine that enforces a packet_stream's timeouts: it owns
/// its frame (freed when it finishes) and holds a reference on the stream's
/// state while it runs. Its sleeps observe the stream's stop token, so
/// closing the stream ends it.
class watchdog {
public:
    struct promise_type : frame_allocation {
        portico::stop_token token;
        void* owner = nullptr;
        void (*release)(void*) noexcept = nullptr;

        watchdog get_return_object() noexcept
        {
            return watchdog{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        auto final_suspend() const noexcept
        {
            struct last {
                bool await_ready() const noexcept { return false; }
                void await_suspend(std::coroutine_handle<promise_type> h) const noexcept
                {
                    void* state = h.promise().owner;
                    auto* drop = h.promise().release;
                    h.destroy();
                    drop(state); // may destroy the state: nothing runs after it
                }
                void await_resume() const noexcept {}
            };
            return last{};
        }
        void return_void() const noexcept {}
        void unhandled_exception() const noexcept { std::terminate(); }
        [[nodiscard]] const portico::stop_token& stop_token() const noexcept { return token; }
    };

    /// Starts the coroutine, which from then on owns itself.
    void start(portico::stop_token token, void* owner, void (*release)(void*) noexcept) &&
    {
        auto& p = handle_.promise();
        p.token = std::move(token);
        p.owner = owner;
        p.release = release;
        std::exchange(handle_, {}).resume();
    }

    watchdog(watchdog&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    watchdog& operator=(watchdog&&) = delete;
    ~watchdog()
    {
        if (handle_) handle_.destroy();
    }

private:
    explicit watchdog(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    std::coroutine_handle<promise_type> handle_;
};

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
                if (!flushing_) {
                    flushing_ = true;
                    wake = true;
                    // The driver holds the core while it runs.
                    add_ref();
                }
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
            case send_queue::admission::queued:
                if (!flushing_) {
                    flushing_ = true;
                    add_ref(); // the driver holds the core while it runs
                    wake_pending_ = true;
                    // At most one kick is on its way, so the kicker is never
                    // resumed on two threads at once; it holds the core too,
                    // as a reader may wake the driver first and let it park.
                    schedule_kick = !std::exchange(kick_scheduled_, true);
                    if (schedule_kick) add_ref();
                }
                break;
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
            if (!std::exchange(wake_pending_, false)) return;
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
    write_driver run_kicker()
    {
        // Each kick resumes it once: from its start, then after kick_done.
        for (;;) {
            bool wake = false;
            {
                std::lock_guard lock(mutex_);
                kick_scheduled_ = false;
                wake = std::exchange(wake_pending_, false);
            }
            if (wake) driver_.resume();
            co_await kick_done{this};
        }
    }

    /// Suspends the kicker, then drops the reference its kick held (the last
    /// one destroys the core and this suspended frame with it).
    struct kick_done {
        stream_core* core;

        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<>) const noexcept
        {
            core->release();
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
                c->flushing_ = false;
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

    write_driver run_driver()
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
    bool flushing_ = false;
    // A queue_copy() woke the driver by deferral and it has not run yet
    // (wake_pending_); the kicker is in a thread's deferred work (kick_scheduled_).
    bool wake_pending_ = false;
    bool kick_scheduled_ = false;
    std::error_code reason_;
    std::atomic<bool> closed_{false};
    std::uint64_t write_calls_ = 0;
    portico::stop_source abort_;
    write_driver driver_;
    write_driver kicker_;
};

/// The part of a write_packet awaiter shared by its forms: the node, the
/// reference on the core while it waits, and the stop callback.
template <class Stream>
class write_packet_base {
public:
    write_packet_base(const write_packet_base&) = delete;
    write_packet_base& operator=(const write_packet_base&) = delete;
    write_packet_base& operator=(write_packet_base&&) = delete;

    bool await_ready() const noexcept { return static_cast<bool>(setup_error_); }

    io_result<void> await_resume() noexcept
    {
        // Waits for a canceller running on another thread.
        cancel_.reset();
        if (std::exchange(holds_core_, false)) core_->release();
        return {setup_error_ ? setup_error_ : node_.result};
    }

protected:
    struct canceller {
        stream_core<Stream>* core;
        send_node* node;
        void operator()() const noexcept { core->withdraw(*node); }
    };

    explicit write_packet_base(stream_core<Stream>* core) noexcept : core_(core)
    {
        if (core_ == nullptr) setup_error_ = make_error_code(errc::bad_state);
    }
    /// Moves an awaiter not awaited yet (with_timeout, when_all take
    /// awaitables by value).
    write_packet_base(write_packet_base&& other) noexcept : core_(other.core_), setup_error_(other.setup_error_)
    {
        assert(!other.holds_core_ && "moving a write_packet that was already awaited");
        node_.header = other.node_.header;
        node_.header_size = other.node_.header_size;
        node_.size = other.node_.size;
    }
    /// Destroyed while waiting (its coroutine's frame was destroyed without
    /// being resumed): a packet not yet being written is taken out of the
    /// queue; one the driver is writing cannot be, and the frame holding it
    /// is about to be freed under the write, so that is fatal.
    ~write_packet_base()
    {
        if (!holds_core_) return;
        cancel_.reset();
        if (!core_->withdraw_quietly(node_)) std::terminate();
        core_->release();
    }

    /// Encodes the header of a packet of `type` with `body_size` bytes of
    /// body into the node (the error, if any, becomes the setup error).
    void encode(std::uint32_t type, std::size_t body_size) noexcept
    {
        if (setup_error_) return;
        auto [ec, header] = encode_header(core_->options.format, type, body_size, node_.header);
        if (ec) {
            setup_error_ = ec;
            return;
        }
        node_.header_size = header;
        node_.size = header + body_size;
    }

    template <class Promise>
    bool start(std::coroutine_handle<Promise> awaiting, std::span<const const_buffer> body)
    {
        node_.body = body;
        node_.waiter = awaiting;
        core_->add_ref();
        holds_core_ = true;
        return core_->start_write(node_, detail::stop_token_of(awaiting), cancel_);
    }

    stream_core<Stream>* core_;
    std::error_code setup_error_;
    send_node node_;

private:
    bool holds_core_ = false;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

template <class B>
concept body_buffer =
    requires(const B& b) { const_buffer(buffer(b)); } && !std::convertible_to<const B&, std::span<const const_buffer>>;

} // namespace detail

/// Awaiter of packet_stream::write_packet(type, body...): the header lives
/// in the awaiter, the body stays where the caller has it (no copy), and
/// the awaiter itself is the queue node (no allocation). Yields
/// io_result<void>; see packet_stream::write_packet.
template <class Stream, std::size_t N>
class [[nodiscard]] write_packet_op : public detail::write_packet_base<Stream> {
    using base = detail::write_packet_base<Stream>;

public:
    /// Made by packet_stream::write_packet(type, body...): encodes the header
    /// of a packet of `type` carrying `body`. A setup error (bad_state for a
    /// moved-from stream, or the encoding's packet_too_large or
    /// invalid_argument) is yielded at once, with nothing sent.
    write_packet_op(detail::stream_core<Stream>* core, std::uint32_t type, std::array<const_buffer, N> body) noexcept
        : base(core), body_(body)
    {
        this->encode(type, buffer_size(body_));
    }
    /// Moves an awaiter not awaited yet (with_timeout, when_all take
    /// awaitables by value).
    write_packet_op(write_packet_op&&) noexcept = default;

    /// Awaiter protocol, called by co_await: queues the packet and suspends
    /// until it was handed to the kernel or failed. The inherited
    /// await_ready() completes at once with a setup error; the inherited
    /// await_resume() yields the io_result<void> described at
    /// packet_stream::write_packet.
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        return this->start(awaiting, std::span<const const_buffer>(body_));
    }

private:
    std::array<const_buffer, N> body_;
};

/// Awaiter of packet_stream::write_packet(type, span of buffers): as
/// write_packet_op, with the caller's array of buffers (which must stay
/// alive until the write completes).
template <class Stream>
class [[nodiscard]] write_packet_gather_op : public detail::write_packet_base<Stream> {
    using base = detail::write_packet_base<Stream>;

public:
    /// Made by packet_stream::write_packet(type, span of buffers): as
    /// write_packet_op's constructor; `body` must stay alive until the write
    /// completes.
    write_packet_gather_op(detail::stream_core<Stream>* core, std::uint32_t type,
                           std::span<const const_buffer> body) noexcept
        : base(core), body_(body)
    {
        this->encode(type, buffer_size(body_));
    }
    /// Moves an awaiter not awaited yet (with_timeout, when_all take
    /// awaitables by value).
    write_packet_gather_op(write_packet_gather_op&&) noexcept = default;

    /// Awaiter protocol, as write_packet_op::await_suspend.
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        return this->start(awaiting, body_);
    }

private:
    std::span<const const_buffer> body_;
};

/// Awaiter of packet_stream::write_packet(shared_packet): holds a reference
/// on the packet's bytes until the write completes.
template <class Stream>
class [[nodiscard]] write_shared_op : public detail::write_packet_base<Stream> {
    using base = detail::write_packet_base<Stream>;

public:
    /// Made by packet_stream::write_packet(shared_packet): holds a reference
    /// on `packet`. Setup errors, yielded at once with nothing sent: bad_state
    /// for a moved-from stream; invalid_argument if `packet` is empty or its
    /// header layout is not the stream's; packet_too_large if it is larger
    /// than the stream's format allows.
    write_shared_op(detail::stream_core<Stream>* core, shared_packet packet) noexcept
        : base(core), packet_(std::move(packet))
    {
        if (this->setup_error_) return;
        const packet_format& mine = core->options.format;
        const packet_format theirs = packet_.format();
        if (!packet_ || theirs.size_bytes != mine.size_bytes || theirs.type_bytes != mine.type_bytes ||
            theirs.order != mine.order || theirs.size_includes_header != mine.size_includes_header) {
            this->setup_error_ = make_error_code(errc::invalid_argument);
        } else if (packet_.bytes().size() > mine.largest_packet()) {
            this->setup_error_ = make_error_code(errc::packet_too_large);
        }
        this->node_.size = packet_.bytes().size();
    }
    /// Moves an awaiter not awaited yet, with its reference on the packet.
    write_shared_op(write_shared_op&& other) noexcept : base(std::move(other)), packet_(std::move(other.packet_)) {}

    /// Awaiter protocol, as write_packet_op::await_suspend, writing the shared
    /// packet's bytes.
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        whole_ = const_buffer(packet_.bytes().data(), packet_.bytes().size());
        return this->start(awaiting, std::span<const const_buffer>(&whole_, 1));
    }

private:
    shared_packet packet_;
    const_buffer whole_;
};

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
/// once, for answering many packets with one write. See
/// docs/design/framing.md.
///
/// packet_stream is a handle (movable) to a reference-counted state; it must
/// outlive every read_packet() it started. Destroying it closes the stream:
/// writers still queued fail with operation_aborted.
///
/// Thread safety: one read_packet() at a time; write_packet() and
/// queue_packet() from any number of threads at once; close() from any
/// thread. Other members must
/// not race with each other.
template <class Stream>
    requires readable_stream<Stream>
class packet_stream {
public:
    /// Frames `stream` with the given options (their format must be valid()).
    packet_stream(Stream stream, const packet_stream_options& options)
        : core_(new detail::stream_core<Stream>(std::move(stream), options))
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
    /// read_packet(). Errors:
    ///   eof               the stream ended cleanly between packets;
    ///   packet_truncated  the stream ended inside a packet;
    ///   packet_too_large, packet_malformed  from the header, before its body
    ///                     is read or anything allocated (the stream closes);
    ///   timed_out         a packet took longer than options().packet_timeout;
    ///   idle_timeout      the peer sent nothing for options().idle_timeout;
    ///   rate_limited      over options().max_packets_per_second;
    ///   invalid_argument  timeouts configured on a stream without a clock
    ///                     (not a timed_stream);
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
        } else if (c.has_timeouts()) {
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
        for (;;) {
            auto [ec, next] = detail::next_packet(c.options.format, c.ring);
            if (ec) {
                // A hostile or broken header: this stream is done, and its
                // writers and later calls learn why.
                c.close(ec);
                co_return io_result<packet>{c.reason(), {}};
            }
            if (next) {
                c.pending = detail::packet_size(c.options.format, *next);
                if (c.has_timeouts()) c.packet_start.store(core_type::never, std::memory_order_release);
                if (c.options.max_packets_per_second != 0 && !c.within_rate(core_type::clock::now())) {
                    c.close(make_error_code(errc::rate_limited));
                    co_return io_result<packet>{c.reason(), {}};
                }
                co_return io_result<packet>{{}, *next};
            }
            if constexpr (writable_stream<Stream>) c.flush_before_wait();
            std::array<mutable_buffer, 2> regions;
            auto read = read_some(c.stream, c.ring.prepare(regions));
            read.set_stop_token(c.abort_token());
            if (c.has_timeouts()) {
                // NOTE: the packet's clock starts at its first wait and is not
                // reset by the bytes that trickle in afterwards.
                const auto now = core_type::ticks(core_type::clock::now());
                if (c.ring.size() != 0 && c.packet_start.load(std::memory_order_relaxed) == core_type::never) {
                    c.packet_start.store(now, std::memory_order_release);
                }
                c.waiting_since.store(now, std::memory_order_release);
            }
            auto [read_ec, n] = co_await std::move(read);
            if (c.has_timeouts()) {
                c.waiting_since.store(core_type::never, std::memory_order_release);
                if (n != 0) c.last_receive.store(core_type::ticks(core_type::clock::now()), std::memory_order_release);
            }
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
    /// is not copied and must stay alive until the write completes.
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

    /// Bytes of packets accepted by write_packet or queue_packet and not yet
    /// taken by the kernel (a block of copies counts whole until it is sent
    /// whole); never above the high watermark (or one packet larger than it).
    [[nodiscard]] std::size_t queued_bytes() const noexcept { return core_->queued_bytes(); }
    /// The most queued_bytes() has been.
    [[nodiscard]] std::size_t peak_queued_bytes() const noexcept { return core_->peak_queued_bytes(); }
    /// Writes issued by the driver so far (each gathers one or more packets).
    [[nodiscard]] std::uint64_t write_calls() const noexcept { return core_->write_calls(); }

private:
    // A task of its own so that it can carry the stream's stop token.
    static task<io_result<std::size_t>> read_some(Stream& stream, std::span<mutable_buffer> regions)
    {
        co_return co_await stream.read_some(regions);
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
