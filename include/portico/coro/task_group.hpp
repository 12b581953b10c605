// portico: task_group — spawn work, then join all of it.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/detached.hpp>
#include <portico/stop_token.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <mutex>
#include <utility>

PORTICO_NAMESPACE_BEGIN

class task_group;

namespace detail {

template <class A>
detached make_group_child(A a)
{
    co_await std::move(a);
}

} // namespace detail

/// A scope for concurrently running work: spawn() starts an awaitable without
/// waiting for it; join() waits until everything spawned has finished.
///
/// Spawned work observes the group's stop token; request_stop() asks all of
/// it to wind down. The first exception escaping spawned work is kept and
/// rethrown by join(); the group keeps running the rest.
///
/// A group must be joined before it is destroyed (destroying it with work
/// still running calls std::terminate: that work would report to a dead
/// object). Thread safety: spawn(), request_stop() and size() may be called
/// from any thread, also from spawned work; join() is awaited by one
/// coroutine at a time.
class task_group {
public:
    task_group() = default;
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;
    ~task_group()
    {
        if (count_.load(std::memory_order_acquire) != 1) std::terminate();
    }

    /// Starts `a` now, on the calling thread, running it until it first
    /// suspends; it then continues wherever its operations complete. Allocates
    /// one frame.
    template <awaitable A>
    void spawn(A a)
    {
        auto child = detail::make_group_child(std::move(a));
        // RACE: count the child before it can run, so a concurrent join()
        // cannot see zero while it is still alive.
        count_.fetch_add(1, std::memory_order_relaxed);
        std::move(child).start(stop_.get_token(), &task_group::child_done, this);
    }

    /// Asks every spawned awaitable, present and future, to stop.
    void request_stop() noexcept { stop_.request_stop(); }

    /// The token spawned work observes.
    [[nodiscard]] portico::stop_token get_token() const noexcept { return stop_.get_token(); }

    /// Number of spawned awaitables still running (a snapshot).
    [[nodiscard]] std::size_t size() const noexcept { return count_.load(std::memory_order_acquire) - 1; }

    /// Awaiter of join(); see there.
    ///
    /// Awaiting it (co_await): continues at once if no spawned awaitable is
    /// running; otherwise suspends until the last one finishes, which resumes the
    /// joiner on its own thread. await_resume makes the group usable again and
    /// rethrows the first exception spawned work let escape (and forgets it).
    class join_op {
    public:
        /// Made by task_group::join().
        explicit join_op(task_group& group) noexcept : group_(group) {}
        /// @name Awaiter protocol
        /// @{

        /// The awaiter protocol, which co_await calls (see the class comment).
        bool await_ready() const noexcept { return group_.count_.load(std::memory_order_acquire) == 1; }
        bool await_suspend(std::coroutine_handle<> joiner) noexcept
        {
            group_.joiner_ = joiner;
            // RACE: drop the joiner's own reference. If that was the last one,
            // every child already finished: do not suspend. Otherwise the last
            // child to finish resumes us.
            return group_.count_.fetch_sub(1, std::memory_order_acq_rel) != 1;
        }
        void await_resume()
        {
            // Re-arm the joiner's reference so the group can be used again.
            group_.count_.store(1, std::memory_order_relaxed);
            group_.rethrow_first_exception();
        }
        /// @}

    private:
        task_group& group_;
    };

    /// Resumes once every spawned awaitable has finished; rethrows the first
    /// exception any of them let escape (and forgets it).
    [[nodiscard]] join_op join() noexcept { return join_op{*this}; }

private:
    // The end hook of every child: it runs after the child's frame is gone,
    // so when join() resumes no frame of the group is alive.
    static void child_done(void* group, std::exception_ptr error) noexcept
    {
        static_cast<task_group*>(group)->finish_child(std::move(error));
    }

    void finish_child(std::exception_ptr error) noexcept
    {
        if (error) {
            std::lock_guard lock(error_mutex_);
            if (!first_error_) first_error_ = std::move(error);
        }
        if (count_.fetch_sub(1, std::memory_order_acq_rel) == 1) joiner_.resume();
    }

    void rethrow_first_exception()
    {
        std::exception_ptr error;
        {
            std::lock_guard lock(error_mutex_);
            error = std::exchange(first_error_, nullptr);
        }
        if (error) std::rethrow_exception(error);
    }

    // One reference per running child plus one held by the (future) joiner.
    std::atomic<std::size_t> count_{1};
    std::coroutine_handle<> joiner_;
    portico::stop_source stop_;
    std::mutex error_mutex_;
    std::exception_ptr first_error_;
};

PORTICO_NAMESPACE_END
