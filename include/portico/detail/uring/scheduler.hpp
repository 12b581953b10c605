// portico: the io_uring scheduler behind io_context on Linux (first part:
// run, post, defer, stop and the work count; docs/design/uring.md).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/stat_blocks.hpp>
#include <portico/detail/work_count.hpp>
#include <portico/io_statistics.hpp>
#include <portico/detail/uring/operation.hpp>
#include <portico/detail/uring/ring.hpp>
#include <portico/detail/uring/timer_service.hpp>

#include <algorithm>
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

class scheduler;

/// What a thread inside scheduler::run() knows about itself. Only that
/// thread touches it.
struct thread_state {
    scheduler* owner;
    stat_block* stats;
    thread_state* outer; // the run() this one is nested in, if any
    // Coroutines to resume once the completion being handled returns
    // (scheduler::defer).
    std::vector<std::coroutine_handle<>> deferred{};
};

inline thread_local thread_state* current_thread_state = nullptr;

/// One ring served by every thread that calls run(): any thread takes any
/// completion, as any thread dequeues any packet of a completion port.
///
/// Work accounting: every operation that will produce a completion counts
/// as outstanding from before it can complete until after its completion has
/// been dispatched. After stop(), run() returns once that count is zero.
///
/// Thread safety: every member may be called from any thread.
class scheduler {
public:
    /// The IOCP scheduler's options, so io_context passes the same ones;
    /// what has no meaning on a ring says so.
    struct options {
        /// No meaning here: every thread in run() takes completions.
        unsigned concurrency_hint = 0;
        /// Completions one thread takes from the ring at a time.
        unsigned batch_size = 64;
        /// No meaning here: every request completes through the ring.
        bool skip_completion_on_success = true;
        /// Not used yet (no inline completions on this backend so far).
        unsigned inline_budget = 1;
        /// Not used yet (no ready queue on this backend so far).
        unsigned port_check_interval = 16;
    };

    /// Makes the ring. Throws std::system_error if the system refuses
    /// io_uring; its message says why and what to do.
    explicit scheduler(options opts)
        : batch_size_((std::max)(1u, opts.batch_size)),
          timers_(&scheduler::post_from_timer, &scheduler::retry_fallback, this)
    {}
    /// As scheduler(options), with the default options.
    scheduler() : scheduler(options{}) {}

    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;

    /// Takes and dispatches completions on the calling thread until stop()
    /// has been called and no work is outstanding.
    void run()
    {
        // NOTE: every allocation this thread needs comes before it takes its
        // block: io_statistics::running_threads counts a thread from there.
        auto batch = std::make_unique<completion[]>(batch_size_);
        thread_state self{this, nullptr, current_thread_state};
        // Room for the usual handful, so deferring does not allocate.
        self.deferred.reserve(16);
        stat_block* stats = stats_.take();
        self.stats = stats;
        current_thread_state = &self;
        struct restore {
            thread_state& self;
            ~restore()
            {
                current_thread_state = self.outer;
                self.owner->stats_.give_back(*self.stats);
            }
        } restore_on_exit{self};

        for (;;) {
            // RACE: pairs with work_finished() and stop() (work_count.hpp).
            if (work_.drained()) break;
            if (fallback_size_.load(std::memory_order_acquire) != 0) drain_fallback();
            // One dequeue per take, as one GetQueuedCompletionStatusEx on
            // Windows: the wait that follows an empty one is part of it.
            stat_blocks::bump(*stats, counter::dequeue_calls, 1);
            const std::size_t n = ring_.take(batch.get(), batch_size_);
            if (n == 0) {
                ring_.wait();
                continue;
            }
            stat_blocks::bump(*stats, counter::completions, n);
            stat_blocks::note_batch(*stats, n);
            for (std::size_t i = 0; i < n; ++i) {
                dispatch(batch[i]);
                run_deferred(self);
            }
        }
        // Let the next thread see the drained state too.
        wake_one();
    }

    /// Queues `h` to be resumed on the calling thread once the completion it
    /// is handling returns, before the thread takes another. Returns false,
    /// doing nothing, if the calling thread is not inside this scheduler's
    /// run() (or, past the reserved room, out of memory).
    bool defer(std::coroutine_handle<> h) noexcept
    {
        for (thread_state* t = current_thread_state; t != nullptr; t = t->outer) {
            if (t->owner != this) continue;
            try {
                t->deferred.push_back(h);
            } catch (const std::bad_alloc&) {
                return false;
            }
            return true;
        }
        return false;
    }

    /// Lets run() return once the outstanding count reaches zero. Idempotent.
    void stop() noexcept
    {
        // The wake is unconditional (work_count::stop says why).
        work_.stop();
        wake_one();
    }

    [[nodiscard]] bool stopped() const noexcept { return work_.stopped(); }

    [[nodiscard]] bool running_in_this_thread() const noexcept
    {
        for (auto* t = current_thread_state; t != nullptr; t = t->outer) {
            if (t->owner == this) return true;
        }
        return false;
    }

    [[nodiscard]] std::int64_t outstanding() const noexcept { return work_.outstanding(); }

    /// Counts an operation that will produce a completion. Call before the
    /// completion can possibly be dispatched.
    void work_started() noexcept { work_.started(); }

    /// The other half of work_started(), after the completion was handled.
    void work_finished() noexcept
    {
        if (work_.finished()) wake_one();
    }

    /// Posts `op` as new work: it is completed, once, on a pool thread.
    void post(operation* op) noexcept
    {
        work_started();
        post_started(op);
    }

    /// Posts `op` whose work was already counted: a no-op request whose
    /// completion carries the op. If the ring refuses it (no room for now,
    /// or no memory), the op goes to a fallback queue that the pool threads
    /// drain, so the work is delayed, never lost.
    void post_started(operation* op) noexcept
    {
        count(counter::posts);
        if (inject_failures_.load(std::memory_order_relaxed) == 0 || !take_injected_failure()) {
            if (submit_post(op)) return;
        }
        count(counter::post_failures);
        {
            std::lock_guard lock(fallback_mutex_);
            fallback_.push_back(*op);
            fallback_size_.fetch_add(1, std::memory_order_release);
        }
        // A thread that waits in the ring must come out to drain the queue.
        // The wake may be refused too: the timer thread retries until the
        // queue is empty (retry_fallback).
        wake_one();
        timers_.request_retry();
    }

    /// Adds n to counter c: to this thread's own block on a pool thread,
    /// to the shared block (atomically) anywhere else.
    void count(counter c, std::uint64_t n = 1) noexcept
    {
        auto* t = current_thread_state;
        if (t != nullptr && t->owner == this) {
            stat_blocks::bump(*t->stats, c, n);
        } else {
            stats_.add_shared(c, n);
        }
    }

    /// The counters summed (io_context::statistics()).
    [[nodiscard]] io_statistics statistics() const { return stats_.sum(outstanding()); }

    /// False: no request here skips its completion (the IOCP option).
    [[nodiscard]] bool skip_completion_on_success() const noexcept { return false; }

    /// The pending timers (timer_service.hpp).
    [[nodiscard]] timer_service& timers() noexcept { return timers_; }

    /// Makes the next n posts fail as if the ring had refused them (tests).
    void inject_post_failures(unsigned n) noexcept { inject_failures_.store(n, std::memory_order_relaxed); }

    /// The ring (for the I/O objects of this backend, and tests).
    [[nodiscard]] ring& io_ring() noexcept { return ring_; }

private:
    using op_queue = intrusive_queue<operation, &operation::next_posted>;

    void dispatch(const completion& c) noexcept
    {
        if (c.user_data == wake_token) return;
        auto* op = reinterpret_cast<operation*>(static_cast<std::uintptr_t>(c.user_data));
        const bool failed = c.result < 0;
        // NOTE: complete() may resume a coroutine that destroys op; only
        // `this` is touched afterwards.
        op->complete(op, failed ? static_cast<std::uintptr_t>(-c.result) : 0u,
                     failed ? 0u : static_cast<std::uint32_t>(c.result));
        work_finished();
    }

    static void run_deferred(thread_state& self) noexcept
    {
        // NOTE: by index, and re-reading the size: a resumed coroutine may
        // defer another, which appends (and may reallocate).
        for (std::size_t i = 0; i < self.deferred.size(); ++i) self.deferred[i].resume();
        self.deferred.clear();
    }

    void drain_fallback() noexcept
    {
        op_queue taken;
        {
            std::lock_guard lock(fallback_mutex_);
            taken = std::move(fallback_);
            fallback_size_.store(0, std::memory_order_release);
        }
        while (operation* op = taken.pop_front()) {
            op->complete(op, 0, 0);
            work_finished();
            if (current_thread_state != nullptr && current_thread_state->owner == this) {
                run_deferred(*current_thread_state);
            }
        }
    }

    /// Timer-thread hook: hands the fallback queue back to the ring, in
    /// order. Returns true when the queue is empty (nothing more to retry).
    static bool retry_fallback(void* context) noexcept
    {
        auto& self = *static_cast<scheduler*>(context);
        std::lock_guard lock(self.fallback_mutex_);
        while (operation* op = self.fallback_.pop_front()) {
            // RACE: off the queue before the submission, which clears its
            // link: once submitted, the op may complete and its frame be
            // freed on another thread at once. A refused one goes back first.
            if (!self.submit_post(op)) {
                self.fallback_.push_front(*op);
                return false;
            }
            self.fallback_size_.fetch_sub(1, std::memory_order_release);
        }
        return true;
    }

    static void post_from_timer(void* context, operation* op) noexcept
    {
        static_cast<scheduler*>(context)->post_started(op);
    }

    /// The no-op request that carries a posted op; false if refused.
    bool submit_post(operation* op) noexcept
    {
        return !ring_.submit([op](io_uring_sqe& sqe) {
            sqe.opcode = IORING_OP_NOP;
            sqe.user_data = reinterpret_cast<std::uintptr_t>(op);
        });
    }

    bool take_injected_failure() noexcept
    {
        unsigned n = inject_failures_.load(std::memory_order_relaxed);
        while (n != 0 && !inject_failures_.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
        }
        return n != 0;
    }

    /// Wakes one thread waiting in the ring. A refused wake is harmless for
    /// stop() and work_finished(): every thread looks at the state again
    /// after its next completion, and the refusal means completions wait.
    void wake_one() noexcept
    {
        count(counter::posts);
        (void)ring_.submit([](io_uring_sqe& sqe) {
            sqe.opcode = IORING_OP_NOP;
            sqe.user_data = wake_token;
        });
    }

    ring ring_;
    const unsigned batch_size_;
    stat_blocks stats_;
    work_count work_;
    std::mutex fallback_mutex_;
    op_queue fallback_;
    std::atomic<std::size_t> fallback_size_{0};
    std::atomic<unsigned> inject_failures_{0};

    // Last: its thread calls back into the members above, so it must be
    // destroyed (and joined) first.
    timer_service timers_;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
