// portico: the child coroutines behind when_all and when_any.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/result_promise.hpp>
#include <portico/stop_token.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <tuple>
#include <utility>
#include <vector>

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
    class promise_type : public result_promise<T> {
    public:
        join_child get_return_object() noexcept
        {
            return join_child{std::coroutine_handle<promise_type>::from_promise(*this)};
        }

        struct final_awaiter {
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) const noexcept
            {
                auto& p = h.promise();
                if (p.on_done_) p.on_done_(p.on_done_context_, p.index_, p.failed());
                return p.latch_->child_done();
            }
            void await_resume() const noexcept {}
        };
        final_awaiter final_suspend() const noexcept { return {}; }

        join_latch* latch_ = nullptr;
        // Optional hook run when the child finishes, before the latch counts
        // it (when_any uses it to pick the winner and cancel the others).
        void (*on_done_)(void* context, std::size_t index, bool failed) noexcept = nullptr;
        void* on_done_context_ = nullptr;
        std::size_t index_ = 0;
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
    void arm(join_latch& latch, portico::stop_token token, std::size_t index,
             void (*on_done)(void*, std::size_t, bool) noexcept, void* context) noexcept
    {
        auto& p = promise();
        p.latch_ = &latch;
        p.set_stop_token(std::move(token));
        p.index_ = index;
        p.on_done_ = on_done;
        p.on_done_context_ = context;
    }

    /// Runs the child on this thread until it first suspends.
    void start() const { handle_.resume(); }

    void rethrow_if_failed() const { promise().rethrow_if_failed(); }
    /// The result; rethrows the child's exception.
    non_void_t<T> take() { return promise().take(); }

private:
    std::coroutine_handle<promise_type> handle_;
};

template <class A>
join_child<std::remove_cvref_t<await_result_t<A>>> make_join_child(A a)
{
    return await_into<join_child<std::remove_cvref_t<await_result_t<A>>>>(std::move(a));
}

/// Makes one child per awaitable, in order.
template <class A>
auto make_join_children(std::vector<A>& as)
{
    std::vector<decltype(make_join_child(std::move(as.front())))> children;
    children.reserve(as.size());
    for (auto& a : as) children.push_back(make_join_child(std::move(a)));
    return children;
}

/// Arms every child (a tuple or a vector of join_child) to report to `latch`
/// and `on_done(context, index, failed)` and to observe `source`, then starts
/// them in order. Children are armed before any starts: a child that finishes
/// at once may run on_done, which may read the others.
template <class Children>
void start_children(Children& children, join_latch& latch, const portico::stop_source& source,
                    void (*on_done)(void*, std::size_t, bool) noexcept, void* context)
{
    if constexpr (requires { children.size(); }) {
        for (std::size_t i = 0; i < children.size(); ++i) {
            children[i].arm(latch, source.get_token(), i, on_done, context);
        }
        for (auto& child : children) child.start();
    } else {
        std::apply(
            [&](auto&... child) {
                std::size_t index = 0;
                (child.arm(latch, source.get_token(), index++, on_done, context), ...);
                (child.start(), ...);
            },
            children);
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
