// portico: the timer service — a timer heap serviced by one thread that
// sleeps on a waitable timer and posts expired timers to the completion port.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/timer_heap.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/windows.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// A timer operation: an overlapped_op (so the port can complete it) and a
/// heap node. Its fields other than the node are guarded by the service's
/// mutex until the op is posted.
struct timer_op : overlapped_op, timer_node {
    using overlapped_op::overlapped_op;

    /// Set by a cancel that found the op not (yet) in the heap; add() then
    /// refuses to start it.
    bool cancel_requested = false;
    /// The outcome, valid once completed: true if the deadline was reached,
    /// false if the timer was cancelled.
    bool fired = false;
};

/// Owns the pending timers of one io_context. See docs/design/timers.md for
/// why a heap and a dedicated thread rather than GQCS time-outs or a wheel.
///
/// Thread safety: every member may be called from any thread.
class timer_service {
public:
    using clock = std::chrono::steady_clock;
    /// Hands a completed timer (fired or cancelled) to the completion port.
    using post_fn = void (*)(void* context, overlapped_op* op) noexcept;
    /// Called on the timer thread when asked to by request_retry().
    using retry_fn = bool (*)(void* context) noexcept;

    timer_service(post_fn post, retry_fn retry, void* context) : post_(post), retry_(retry), context_(context)
    {
        wake_ = ::CreateEventW(nullptr, FALSE, FALSE, nullptr);
        if (wake_ == nullptr)
            throw std::system_error(static_cast<int>(::GetLastError()), std::system_category(), "CreateEventW");
        // A high-resolution timer where the system has one (Windows 10 1803+);
        // otherwise the classic one, with the system timer's granularity.
        constexpr DWORD high_resolution = 0x00000002; // CREATE_WAITABLE_TIMER_HIGH_RESOLUTION
        timer_ = ::CreateWaitableTimerExW(nullptr, nullptr, high_resolution, TIMER_ALL_ACCESS);
        if (timer_ == nullptr) timer_ = ::CreateWaitableTimerExW(nullptr, nullptr, 0, TIMER_ALL_ACCESS);
        if (timer_ == nullptr) {
            const auto error = static_cast<int>(::GetLastError());
            ::CloseHandle(wake_);
            throw std::system_error(error, std::system_category(), "CreateWaitableTimerExW");
        }
    }

    timer_service(const timer_service&) = delete;
    timer_service& operator=(const timer_service&) = delete;

    ~timer_service()
    {
        {
            std::lock_guard lock(mutex_);
            shutdown_ = true;
        }
        ::SetEvent(wake_);
        if (thread_.joinable()) thread_.join();
        ::CloseHandle(timer_);
        ::CloseHandle(wake_);
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
        // wake. Re-arming the waitable timer here, under the lock, costs one
        // call and no context switch; waking the thread to do it cost a
        // switch per timer (bench/timers.cpp, docs/design/timers.md).
        if (heap_.push(op)) arm(op->deadline - clock::now());
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
    /// until it returns true (used when the port refuses a post).
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
        ::SetEvent(wake_);
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
            if (!heap_.empty()) arm(heap_.top()->deadline - now);
            lock.unlock();
            // Clear the request before retrying, so a request made during the
            // retry is not lost.
            bool retry = retry_requested_.exchange(false, std::memory_order_acq_rel);
            if (retry && !retry_(context_)) retry_requested_.store(true, std::memory_order_release);
            retry = retry_requested_.load(std::memory_order_acquire);
            const HANDLE handles[2] = {wake_, timer_};
            ::WaitForMultipleObjects(2, handles, FALSE, retry ? 1 : INFINITE);
            lock.lock();
        }
    }

    /// Sets the waitable timer to fire after `due`. Called with the lock held,
    /// so the last call always reflects the current earliest deadline.
    void arm(clock::duration due) noexcept
    {
        // Relative due times are negative, in 100 ns units; round up so the
        // timer never fires before the deadline.
        const auto ticks = (std::chrono::duration_cast<std::chrono::nanoseconds>(due).count() + 99) / 100;
        LARGE_INTEGER when;
        when.QuadPart = -(ticks > 0 ? ticks : 1);
        ::SetWaitableTimer(timer_, &when, 0, nullptr, nullptr, FALSE);
    }

    const post_fn post_;
    const retry_fn retry_;
    void* const context_;

    mutable std::mutex mutex_;
    timer_heap heap_;
    bool shutdown_ = false;
    std::atomic<bool> retry_requested_{false};
    std::atomic<bool> started_{false};
    std::thread thread_;
    HANDLE wake_ = nullptr;
    HANDLE timer_ = nullptr;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
