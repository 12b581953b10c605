// portico: the timer service every backend shares — a timer heap serviced
// by one thread that sleeps on the backend's alarm and posts expired timers
// to the backend's scheduler (docs/design/timers.md).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/timer_heap.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <thread>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// A timer operation: the backend's operation (so its scheduler can complete
/// it) and a heap node. Its fields other than the node are guarded by the
/// service's mutex until the op is posted.
template <class Operation>
struct basic_timer_op : Operation, timer_node {
    using Operation::Operation;

    /// Set by a cancel that found the op not (yet) in the heap; add() then
    /// refuses to start it.
    bool cancel_requested = false;
    /// The outcome, valid once completed: true if the deadline was reached,
    /// false if the timer was cancelled.
    bool fired = false;
};

/// Owns the pending timers of one io_context.
///
/// `Alarm` is the backend's way for the thread to sleep: `arm(duration)`
/// (wake after it; called with the service's lock held, so the last call
/// reflects the current earliest deadline, and without waking the thread),
/// `wake()` (wake now), and `wait(bool retry)` (sleep until armed time or
/// woken; at most about a millisecond when `retry`). Its constructor may
/// throw std::system_error.
///
/// Thread safety: every member may be called from any thread.
template <class Operation, class Alarm>
class basic_timer_service {
public:
    using clock = std::chrono::steady_clock;
    using timer_op = basic_timer_op<Operation>;
    /// Hands a completed timer (fired or cancelled) to the scheduler.
    using post_fn = void (*)(void* context, Operation* op) noexcept;
    /// Called on the timer thread when asked to by request_retry().
    using retry_fn = bool (*)(void* context) noexcept;

    basic_timer_service(post_fn post, retry_fn retry, void* context) : post_(post), retry_(retry), context_(context) {}

    basic_timer_service(const basic_timer_service&) = delete;
    basic_timer_service& operator=(const basic_timer_service&) = delete;

    ~basic_timer_service()
    {
        {
            std::lock_guard lock(mutex_);
            shutdown_ = true;
        }
        alarm_.wake();
        if (thread_.joinable()) thread_.join();
    }

    /// Starts `op` (its deadline already set). Returns false if it must not
    /// start: it was cancelled before it got here.
    /// On true, the op will be posted exactly once, fired or cancelled.
    bool add(timer_op* op)
    {
        std::lock_guard lock(mutex_);
        if (op->cancel_requested) return false;
        start_thread_locked();
        // NOTE: only a new earliest deadline changes when the thread must
        // wake. Re-arming the alarm here, under the lock, costs one call and
        // no context switch; waking the thread to do it cost a switch per
        // timer (bench/timers.cpp, docs/design/timers.md).
        if (heap_.push(op)) alarm_.arm(op->deadline - clock::now());
        return true;
    }

    /// Cancels `op`: if it is pending it is posted now as cancelled; if it
    /// has not been added yet, add() will refuse it; if it already fired,
    /// nothing happens. Returns true if this call cancelled a pending timer.
    bool cancel(timer_op* op) noexcept
    {
        std::lock_guard lock(mutex_);
        if (!heap_.erase(op)) {
            op->cancel_requested = true;
            return false;
        }
        op->fired = false;
        // RACE: post under the lock, so the timer thread never sees this
        // op again; the awaiter may be resumed before we
        // return, which is fine because we no longer touch op.
        post_(context_, op);
        return true;
    }

    /// Number of pending timers (a snapshot).
    [[nodiscard]] std::size_t pending() const
    {
        std::lock_guard lock(mutex_);
        return heap_.size();
    }

    /// Asks the timer thread to call the retry hook about every millisecond
    /// until it returns true (used when the scheduler refuses a post).
    ///
    /// NOTE: may be called while this service's mutex is held (a post that
    /// fails inside cancel() or on the timer thread): the thread is always
    /// running by then, because a timer was added, so no lock is needed.
    void request_retry()
    {
        retry_requested_.store(true, std::memory_order_release);
        if (!started_.load(std::memory_order_acquire)) {
            std::lock_guard lock(mutex_);
            start_thread_locked();
        }
        alarm_.wake();
    }

private:
    void start_thread_locked()
    {
        // NOTE: started on first use, so a context that never uses a timer
        // never pays for the thread.
        if (!thread_.joinable()) {
            thread_ = std::thread([this] { thread_main(); });
            started_.store(true, std::memory_order_release);
        }
    }

    void thread_main() noexcept
    {
        std::unique_lock lock(mutex_);
        while (!shutdown_) {
            const auto now = clock::now();
            while (!heap_.empty() && heap_.top()->deadline <= now) {
                auto* op = static_cast<timer_op*>(heap_.pop());
                op->fired = true;
                post_(context_, op);
            }
            if (!heap_.empty()) alarm_.arm(heap_.top()->deadline - now);
            lock.unlock();
            // Clear the request before retrying, so a request made during the
            // retry is not lost.
            bool retry = retry_requested_.exchange(false, std::memory_order_acq_rel);
            if (retry && !retry_(context_)) retry_requested_.store(true, std::memory_order_release);
            retry = retry_requested_.load(std::memory_order_acquire);
            alarm_.wait(retry);
            lock.lock();
        }
    }

    const post_fn post_;
    const retry_fn retry_;
    void* const context_;

    mutable std::mutex mutex_;
    timer_heap heap_;
    bool shutdown_ = false;
    std::atomic<bool> retry_requested_{false};
    std::atomic<bool> started_{false};
    Alarm alarm_;
    std::thread thread_;
};

} // namespace detail

PORTICO_NAMESPACE_END
