// portico: io_context — one completion port served by a pool of threads.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/backend.hpp>
#include <portico/detail/detached.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>
#include <portico/stop_token.hpp>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

class io_context;

namespace detail {

/// How portico's own I/O objects (and its tests) reach the backend behind an
/// io_context; not part of the public API.
struct context_access {
    static backend::scheduler& scheduler(io_context& ctx) noexcept;
};

} // namespace detail

/// Awaiter returned by io_context::schedule(): resumes the awaiting coroutine
/// on one of the context's pool threads. Never allocates.
///
/// Awaiting it (co_await): always suspends and posts the coroutine to the
/// completion port, so it resumes on a pool thread. await_resume yields nothing.
class [[nodiscard]] schedule_op : private detail::backend::operation {
public:
    /// Made by io_context::schedule(); `s` is the context's scheduler.
    explicit schedule_op(detail::backend::scheduler& s) noexcept
        : detail::backend::operation(&schedule_op::on_complete), scheduler_(s)
    {}

    /// @name Awaiter protocol
    /// @{

    /// The awaiter protocol, which co_await calls (see the class comment).
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> awaiting) noexcept
    {
        continuation_ = awaiting;
        // NOTE: once posted, a pool thread may resume the coroutine and
        // destroy this awaiter before post() returns: touch nothing after it.
        scheduler_.post(this);
        return true;
    }
    void await_resume() const noexcept {}
    /// @}

private:
    static void on_complete(detail::backend::operation* op, std::uintptr_t, std::uint32_t) noexcept
    {
        static_cast<schedule_op*>(op)->continuation_.resume();
    }

    detail::backend::scheduler& scheduler_;
    std::coroutine_handle<> continuation_;
};

/// Awaiter returned by io_context::sleep_for() and sleep_until(). Yields
/// io_result<void>: success when the deadline passed, operation_aborted when
/// cancelled through the awaiting coroutine's stop token (for spawned work,
/// that is also io_context::stop()). Never allocates.
///
/// Awaiting it (co_await): completes at once, with success, if the deadline has
/// passed, and with operation_aborted if stop was already requested; otherwise
/// suspends until the timer fires or is cancelled. Timers keep running after
/// io_context::stop(), so a shutdown can have deadlines. await_suspend throws if the timer cannot be
/// started (the timer heap cannot grow). await_resume yields the io_result<void>
/// described above.
class [[nodiscard]] sleep_op : private detail::backend::timer_op {
public:
    /// The clock deadlines are measured on.
    using clock = std::chrono::steady_clock;

    /// Made by io_context::sleep_for() and sleep_until(): waits until `when`
    /// on the timers of `s`, the context's scheduler.
    sleep_op(detail::backend::scheduler& s, clock::time_point when) noexcept
        : detail::backend::timer_op(&sleep_op::on_complete), scheduler_(s)
    {
        deadline = when;
    }

    /// @name Awaiter protocol
    /// @{

    /// The awaiter protocol, which co_await calls (see the class comment).
    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        continuation_ = awaiting;
        if (deadline <= clock::now()) return false;

        portico::stop_token token = detail::stop_token_of(awaiting);
        if (token.stop_requested()) {
            result_ = make_error_code(errc::operation_aborted);
            return false;
        }
        // RACE: the stop callback is registered before the timer becomes
        // visible to the timer thread; if it runs first (even inline, right
        // here), cancel() marks the op and add() refuses to start it.
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        scheduler_.count(detail::counter::timers_started);
        scheduler_.work_started();
        bool started = false;
        try {
            started = scheduler_.timers().add(this);
        } catch (...) {
            // The heap could not grow (or the timer thread not start): the
            // exception reaches the awaiting coroutine, the count stays right.
            scheduler_.work_finished();
            throw;
        }
        if (!started) {
            // Cancelled between the registration above and add(): counted as
            // started, so it ends as cancelled and started == fired +
            // cancelled + pending holds.
            scheduler_.count(detail::counter::timers_cancelled);
            scheduler_.work_finished();
            result_ = make_error_code(errc::operation_aborted);
            return false;
        }
        // NOTE: the timer may now fire or be cancelled on another thread and
        // resume the coroutine, destroying this awaiter: touch nothing more.
        return true;
    }

    io_result<void> await_resume() const noexcept { return {result_}; }
    /// @}

private:
    struct canceller {
        sleep_op* op;
        void operator()() const noexcept { op->scheduler_.timers().cancel(op); }
    };

    static void on_complete(detail::backend::operation* base, std::uintptr_t, std::uint32_t) noexcept
    {
        auto* self = static_cast<sleep_op*>(static_cast<detail::backend::timer_op*>(base));
        if (self->fired) {
            self->scheduler_.count(detail::counter::timers_fired);
        } else {
            self->scheduler_.count(detail::counter::timers_cancelled);
            self->result_ = make_error_code(errc::operation_aborted);
        }
        self->continuation_.resume();
    }

    detail::backend::scheduler& scheduler_;
    std::coroutine_handle<> continuation_;
    std::error_code result_;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

/// An I/O execution context over one Windows I/O completion port.
///
/// Any number of threads may call run() at once; each dequeues completions in
/// batches with GetQueuedCompletionStatusEx and resumes the coroutines waiting
/// on them. thread_pool (portico/thread_pool.hpp) runs it on N threads.
///
/// Lifetime: run() keeps serving until stop() is called *and* every
/// outstanding operation has completed (the drain). stop() requests the
/// context's stop token, so spawned coroutines (which observe it) see their
/// operations cancelled and unwind, acceptors close, and signal_set waits
/// end. Everything else keeps working during the drain, timers included: a
/// shutdown that tells every client goodbye can bound its wait with
/// with_timeout, and packet_stream's timeouts still trip
/// (docs/design/shutdown.md). A stopped context cannot be restarted. Destroy
/// the context only after every run() has returned.
///
/// Thread safety: all members may be called from any thread, unless noted.
class io_context {
public:
    /// The clock of sleep_for() and sleep_until().
    using clock = std::chrono::steady_clock;

    /// Construction options.
    struct options {
        /// Threads the completion port lets run at once; 0 means one per
        /// processor. Usually the number of threads that will call run().
        unsigned concurrency_hint = 0;
        /// Completion packets one dequeue call may return (default 64).
        unsigned batch_size = 64;
        /// When a socket call succeeds at once, skip its completion packet
        /// and continue the coroutine on the same thread (only where every
        /// provider has IFS handles): inline within the turn's budget,
        /// otherwise from the thread's ready queue (inline_budget). Results
        /// are the same either way; off costs a packet per call.
        bool skip_completion_on_success = true;
        /// Immediate successes a chain may resume inline in its turn. A turn
        /// begins when a pool thread resumes a coroutine for a completion
        /// (or a ready operation, or a deferred resumption); past the budget
        /// the operation waits in the thread's ready queue, behind the
        /// completions the thread already dequeued, and runs in order
        /// without a system call. So a connection whose data is always
        /// ready is served one turn at a time, like the others. The default
        /// 1 lets a handler's reply go out inline (read, write, then the
        /// next read waits its turn); 0 queues every immediate success
        /// (fairest, one more pass per message); a large budget lets a
        /// connection run ahead of the others (fewer passes, more jitter).
        /// See docs/design/operations.md.
        unsigned inline_budget = 1;
        /// With operations ready and the completion port found empty, a
        /// pool thread serves this many of them (turns) before it looks at
        /// the port again (each look is a system call). 1 looks before every
        /// pass of the ready queue: a packet that arrives meanwhile never
        /// waits behind a second turn of a busy connection, at a dequeue call
        /// per turn when one connection is busy alone. The default 16 saves
        /// those calls; a packet arriving at such a quiet moment waits at
        /// most 16 turns. Under load the port is rarely empty, and the thread
        /// looks before every pass. See docs/design/operations.md.
        unsigned port_check_interval = 16;
        /// How long a pool thread that finds nothing to run keeps looking
        /// for completions before it blocks in the system. 0, the default,
        /// blocks at once: an idle thread costs nothing, and the next
        /// completion pays a wake-up (the scheduler's, tens of microseconds).
        /// A spin finds a completion that comes meanwhile without that
        /// wake-up, at the price of a busy processor for the whole spin
        /// while idle: for a server that owns its cores and answers a few
        /// connections whose latency matters more than the processor time
        /// (tens of microseconds is a round trip on a local network). Each
        /// look is a read of the completion queue in memory on Linux, and
        /// a GetQueuedCompletionStatusEx call with no wait on Windows.
        /// io_statistics::spin_finds counts the spins that found work, and
        /// idle_waits the blocks. A negative spin counts as 0, one past a
        /// day as a day. See docs/design/operations.md.
        std::chrono::microseconds idle_spin{0};
    };

    /// Creates the completion port and starts Winsock on first use.
    /// Throws std::system_error if the system refuses.
    io_context() : io_context(options{}) {}
    /// As io_context(), with the given options.
    explicit io_context(options opts)
        : scheduler_({opts.concurrency_hint, opts.batch_size, opts.skip_completion_on_success, opts.inline_budget,
                      opts.port_check_interval, opts.idle_spin})
    {}

    io_context(const io_context&) = delete;
    io_context& operator=(const io_context&) = delete;

    /// Serves completions on the calling thread until stop() has been called
    /// and no operation is outstanding. Returns at once if both already hold.
    void run() { scheduler_.run(); }

    /// Begins shutdown: requests the context's stop token (what observes it
    /// is cancelled: spawned work, acceptors, signal_set waits), and run()
    /// returns once the outstanding count drains to zero. Timers and sockets
    /// not tied to the token keep working meanwhile. Idempotent; callable from any thread,
    /// including a pool thread.
    void stop() noexcept
    {
        stop_source_.request_stop();
        scheduler_.stop();
    }

    /// True once stop() has been called.
    [[nodiscard]] bool stopped() const noexcept { return scheduler_.stopped(); }

    /// True if the calling thread is inside this context's run().
    [[nodiscard]] bool running_in_this_thread() const noexcept { return scheduler_.running_in_this_thread(); }

    /// Operations started and not yet completed.
    [[nodiscard]] std::int64_t outstanding_work() const noexcept { return scheduler_.outstanding(); }

    /// Requested by stop(); spawn()ed work observes it.
    [[nodiscard]] portico::stop_token get_stop_token() const noexcept { return stop_source_.get_token(); }

    /// A snapshot of the context's counters; see io_statistics.
    [[nodiscard]] io_statistics statistics() const { return scheduler_.statistics(); }

    /// `co_await ctx.schedule();` continues the coroutine on a pool thread.
    /// Works after stop() too (it is how coroutines unwind). No allocation.
    [[nodiscard]] schedule_op schedule() noexcept { return schedule_op{scheduler_}; }

    /// `co_await ctx.sleep_for(d)`: resumes on a pool thread after at least
    /// `d` (at once, inline, if d <= 0). See sleep_op for the result.
    [[nodiscard]] sleep_op sleep_for(clock::duration d) noexcept { return sleep_until(clock::now() + d); }

    /// `co_await ctx.sleep_until(t)`: as sleep_for, until the time point t.
    [[nodiscard]] sleep_op sleep_until(clock::time_point t) noexcept { return sleep_op{scheduler_, t}; }

    /// Resumes `h` on the calling pool thread once the completion that
    /// thread is handling has returned, before it takes the next one from
    /// the port: for batching work that many steps of one handler produce
    /// (packet_stream::queue_packet flushes this way). Called from a thread
    /// that is not running this context, posts `h` to the pool instead
    /// (allocating one node). Any thread.
    void defer(std::coroutine_handle<> h)
    {
        if (!scheduler_.defer(h)) post([h] { h.resume(); });
    }

    /// Runs `f()` once on a pool thread. Allocates one node for `f`; an
    /// exception escaping `f` calls std::terminate.
    template <class F>
        requires std::is_invocable_v<F&>
    void post(F f)
    {
        scheduler_.post(new posted_function<F>(std::move(f)));
    }

    /// Runs `a` detached on the pool: it starts on a pool thread and counts
    /// as outstanding work until it finishes, so run() does not return (even
    /// after stop()) while it runs. It observes get_stop_token(). Allocates
    /// one frame. An exception escaping `a` calls std::terminate: use a
    /// task_group to collect errors instead.
    template <awaitable A>
    void spawn(A a)
    {
        auto child = make_detached(*this, std::move(a));
        scheduler_.work_started();
        std::move(child).start(stop_source_.get_token(), &io_context::spawned_done, this);
    }

private:
    friend struct detail::context_access;

    template <class F>
    struct posted_function final : detail::backend::operation {
        explicit posted_function(F&& fn) : detail::backend::operation(&posted_function::run), f(std::move(fn)) {}
        static void run(detail::backend::operation* op, std::uintptr_t, std::uint32_t) noexcept
        {
            std::unique_ptr<posted_function> self(static_cast<posted_function*>(op));
            self->f();
        }
        F f;
    };

    // A spawned coroutine's end: its frame is gone, its work is done.
    static void spawned_done(void* ctx, std::exception_ptr error) noexcept
    {
        detail::terminate_on_error(std::move(error));
        static_cast<io_context*>(ctx)->scheduler_.work_finished();
    }

    template <class A>
    static detail::detached make_detached(io_context& ctx, A a)
    {
        co_await ctx.schedule();
        co_await std::move(a);
    }

    detail::backend::scheduler scheduler_;
    portico::stop_source stop_source_;
};

// An io_context may live in a coroutine frame (a test's, a program's main
// task), and frames are allocated without over-alignment.
static_assert(alignof(io_context) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__,
              "io_context must not need more alignment than operator new gives a coroutine frame");

inline detail::backend::scheduler& detail::context_access::scheduler(io_context& ctx) noexcept
{
    return ctx.scheduler_;
}

PORTICO_NAMESPACE_END
