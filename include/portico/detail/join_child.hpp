// portico: the child coroutines behind when_all and when_any.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/detail/frame_tracking.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// Counts finished children; the last one to finish resumes the parent.
/// Starts at children + 1: the extra reference is the parent's own, dropped
/// once every child has been started, so the parent cannot be resumed while
/// it is still starting children.
class join_latch {
public:
    explicit join_latch(std::size_t children) noexcept : count_(children + 1) {}

    /// Called by a finished child. Returns the parent to resume, or a no-op.
    std::coroutine_handle<> child_done() noexcept
    {
        // RACE: acq_rel so the parent, resumed by the last child, sees every
        // child's result.
        if (count_.fetch_sub(1, std::memory_order_acq_rel) == 1) return parent_;
        return std::noop_coroutine();
    }

    /// Called by the parent after starting all children. Returns true if the
    /// parent must suspend (some child is still running).
    bool parent_started_all() noexcept { return count_.fetch_sub(1, std::memory_order_acq_rel) > 1; }

    void set_parent(std::coroutine_handle<> parent) noexcept { parent_ = parent; }

private:
    std::atomic<std::size_t> count_;
    std::coroutine_handle<> parent_;
};

/// Runs one awaitable to completion, storing its result or exception, and
/// reports to a join_latch. Owned (and destroyed) by the when_all/when_any
/// coroutine that created it.
template <class T>
class join_child {
public:
    class promise_type : public frame_allocation {
    public:
        join_child get_return_object() noexcept
        {
            return join_child{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }

        struct final_awaiter {
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) const noexcept
            {
                auto& p = h.promise();
                if (p.on_done_) p.on_done_(p.on_done_context_, p.index_, static_cast<bool>(p.exception_));
                return p.latch_->child_done();
            }
            void await_resume() const noexcept {}
        };
        final_awaiter final_suspend() const noexcept { return {}; }

        void unhandled_exception() noexcept { exception_ = std::current_exception(); }
        void return_void() noexcept {}

        template <class U>
        std::suspend_never yield_value(U&& value) noexcept(std::is_nothrow_constructible_v<non_void_t<T>, U&&>)
        {
            value_.emplace(std::forward<U>(value));
            return {};
        }

        const std::stop_token& stop_token() const noexcept { return stop_token_; }

        join_latch* latch_ = nullptr;
        // Optional hook run when the child finishes, before the latch counts
        // it (when_any uses it to pick the winner and cancel the others).
        void (*on_done_)(void* context, std::size_t index, bool failed) noexcept = nullptr;
        void* on_done_context_ = nullptr;
        std::size_t index_ = 0;
        std::stop_token stop_token_;
        std::exception_ptr exception_;
        std::optional<non_void_t<T>> value_;
    };

    explicit join_child(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    join_child(join_child&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    join_child& operator=(join_child&&) = delete;
    ~join_child()
    {
        if (handle_) handle_.destroy();
    }

    promise_type& promise() const noexcept { return handle_.promise(); }

    /// Prepares the child to report to `latch` (and to `on_done`, if set)
    /// and to observe `token`.
    void arm(join_latch& latch, std::stop_token token, std::size_t index,
             void (*on_done)(void*, std::size_t, bool) noexcept, void* context) noexcept
    {
        auto& p = promise();
        p.latch_ = &latch;
        p.stop_token_ = std::move(token);
        p.index_ = index;
        p.on_done_ = on_done;
        p.on_done_context_ = context;
    }

    /// Runs the child on this thread until it first suspends.
    void start() const { handle_.resume(); }

    bool failed() const noexcept { return static_cast<bool>(promise().exception_); }
    void rethrow_if_failed() const
    {
        if (promise().exception_) std::rethrow_exception(promise().exception_);
    }
    /// The result; rethrows the child's exception.
    non_void_t<T> take()
    {
        rethrow_if_failed();
        return std::move(*promise().value_);
    }

private:
    std::coroutine_handle<promise_type> handle_;
};

template <class A>
join_child<std::remove_cvref_t<await_result_t<A>>> make_join_child(A a)
{
    if constexpr (std::is_void_v<await_result_t<A>>) {
        co_await std::move(a);
        co_yield std::monostate{};
    } else {
        co_yield co_await std::move(a);
    }
}

/// Awaited by the parent: starts the children, suspends until the latch says
/// all of them are done.
template <class Start>
class join_all_op {
public:
    join_all_op(join_latch& latch, Start start) noexcept : latch_(latch), start_(std::move(start)) {}

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> parent)
    {
        latch_.set_parent(parent);
        start_();
        return latch_.parent_started_all();
    }
    void await_resume() const noexcept {}

private:
    join_latch& latch_;
    Start start_;
};

} // namespace detail

PORTICO_NAMESPACE_END
