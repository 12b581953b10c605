// portico: async_mutex — a mutex whose lock() suspends instead of blocking.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstdint>
#include <mutex> // std::adopt_lock_t, std::adopt_lock
#include <utility>

PORTICO_NAMESPACE_BEGIN

class async_mutex;

/// Owns a locked async_mutex and unlocks it on destruction (or unlock()).
class [[nodiscard]] async_mutex_lock {
public:
    /// Adopts the lock on `m`, which the caller must hold.
    explicit async_mutex_lock(async_mutex& m, std::adopt_lock_t) noexcept : mutex_(&m) {}
    /// Takes over the lock `other` owns, if any; `other` is left owning
    /// nothing (its unlock() and destructor do nothing).
    async_mutex_lock(async_mutex_lock&& other) noexcept : mutex_(std::exchange(other.mutex_, nullptr)) {}
    async_mutex_lock& operator=(async_mutex_lock&&) = delete;
    ~async_mutex_lock() { unlock(); }

    /// Unlocks early; later calls (and the destructor) do nothing.
    void unlock() noexcept;

private:
    async_mutex* mutex_;
};

/// A mutual-exclusion lock for coroutines: `co_await m.lock()` suspends until
/// the lock is free, without blocking the thread. Waiters get the lock in
/// FIFO order; unlock() resumes the next waiter inline, on the unlocking
/// thread. No allocation: each waiter lives in its coroutine frame.
/// Thread safety: all members may be called from any thread.
class async_mutex {
public:
    async_mutex() noexcept = default;
    async_mutex(const async_mutex&) = delete;
    async_mutex& operator=(const async_mutex&) = delete;
    ~async_mutex()
    {
        assert(state_.load(std::memory_order_relaxed) == not_locked && "async_mutex destroyed while locked");
    }

    /// Takes the lock if it is free, without suspending. Returns true on success.
    [[nodiscard]] bool try_lock() noexcept
    {
        auto expected = not_locked;
        return state_.compare_exchange_strong(expected, locked_no_waiters, std::memory_order_acquire,
                                              std::memory_order_relaxed);
    }

    /// Awaiter of lock(): completes holding the lock. Lives in the awaiting
    /// frame and is linked into the waiter list while suspended.
    ///
    /// Awaiting it (co_await): takes the lock at once if it is free; otherwise
    /// queues the coroutine, which the unlock() handing it the lock resumes,
    /// inline on the unlocking thread. await_resume yields nothing: the coroutine
    /// holds the lock.
    class lock_op {
    public:
        /// Made by async_mutex::lock(): an awaiter taking the lock on `m`.
        explicit lock_op(async_mutex& m) noexcept : mutex_(m) {}
        /// @name Awaiter protocol
        /// @{

        /// The awaiter protocol, which co_await calls (see the class comment).
        bool await_ready() noexcept { return mutex_.try_lock(); }
        bool await_suspend(std::coroutine_handle<> awaiter) noexcept
        {
            awaiter_ = awaiter;
            auto state = mutex_.state_.load(std::memory_order_relaxed);
            for (;;) {
                if (state == not_locked) {
                    if (mutex_.state_.compare_exchange_weak(state, locked_no_waiters, std::memory_order_acquire,
                                                            std::memory_order_relaxed)) {
                        return false;
                    }
                } else {
                    // Push onto the LIFO list of new waiters; the unlocker
                    // reverses it into FIFO order.
                    next_ = reinterpret_cast<lock_op*>(state);
                    // RACE: release publishes awaiter_/next_ to the unlocker.
                    if (mutex_.state_.compare_exchange_weak(state, reinterpret_cast<std::uintptr_t>(this),
                                                            std::memory_order_release, std::memory_order_relaxed)) {
                        return true;
                    }
                }
            }
        }
        void await_resume() const noexcept {}
        /// @}

    protected:
        friend class async_mutex;
        /// The mutex being locked.
        async_mutex& mutex_;
        /// The next waiter in the mutex's list while this one is queued.
        lock_op* next_ = nullptr;
        /// The suspended coroutine, resumed by the unlock() that hands it the
        /// lock.
        std::coroutine_handle<> awaiter_;
    };

    /// Awaiter of scoped_lock(): as lock_op, yielding an async_mutex_lock.
    class scoped_lock_op : public lock_op {
    public:
        /// Made by async_mutex::scoped_lock(): an awaiter taking the lock on
        /// `m`.
        using lock_op::lock_op;
        /// Awaiter protocol, as lock_op: yields an async_mutex_lock owning the
        /// lock.
        async_mutex_lock await_resume() const noexcept { return async_mutex_lock{mutex_, std::adopt_lock}; }
    };

    /// `co_await m.lock();` — resumes holding the lock; call unlock() later.
    [[nodiscard]] lock_op lock() noexcept { return lock_op{*this}; }

    /// `auto guard = co_await m.scoped_lock();` — resumes holding the lock,
    /// released when the guard is destroyed.
    [[nodiscard]] scoped_lock_op scoped_lock() noexcept { return scoped_lock_op{*this}; }

    /// Releases the lock, handing it to the oldest waiter (resumed inline
    /// here) if there is one. Must be called by the holder.
    void unlock() noexcept
    {
        assert(state_.load(std::memory_order_relaxed) != not_locked && "unlock of an unlocked async_mutex");
        if (waiters_.empty()) {
            auto expected = locked_no_waiters;
            if (state_.compare_exchange_strong(expected, not_locked, std::memory_order_release,
                                               std::memory_order_relaxed)) {
                return;
            }
            // New waiters arrived: take them all (acquire pairs with their
            // release). They are linked newest first; pushing each to the
            // front of the queue puts the oldest first.
            auto* op = reinterpret_cast<lock_op*>(state_.exchange(locked_no_waiters, std::memory_order_acquire));
            while (op != nullptr) {
                lock_op* next = op->next_;
                waiters_.push_front(*op);
                op = next;
            }
        }
        // The lock passes directly to the waiter: the state stays locked.
        waiters_.pop_front()->awaiter_.resume();
    }

private:
    // state_: not_locked, locked_no_waiters, or a pointer to the most recently
    // arrived waiter (lock_op is at least 2-aligned, so it is never 1).
    static constexpr std::uintptr_t not_locked = 1;
    static constexpr std::uintptr_t locked_no_waiters = 0;

    std::atomic<std::uintptr_t> state_{not_locked};
    // FIFO of waiters already taken from state_; only the holder touches it.
    detail::intrusive_queue<lock_op, &lock_op::next_> waiters_;
};

inline void async_mutex_lock::unlock() noexcept
{
    if (mutex_ != nullptr) std::exchange(mutex_, nullptr)->unlock();
}

PORTICO_NAMESPACE_END
