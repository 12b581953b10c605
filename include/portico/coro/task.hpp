// portico: task<T> — a lazily started coroutine with symmetric transfer.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/stop_token.hpp>

#include <cassert>
#include <coroutine>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>

PORTICO_NAMESPACE_BEGIN

template <class T = void>
class task;

namespace detail {

/// What every portico coroutine promise offers to the awaiters inside it: the
/// continuation to resume when it finishes and the stop token its operations
/// observe.
class task_promise_base : public frame_allocation {
public:
    struct final_awaiter {
        bool await_ready() const noexcept { return false; }

        // NOTE: returning the continuation is the symmetric transfer that keeps
        // a chain of a million nested awaits from growing the stack.
        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) const noexcept
        {
            return self.promise().continuation_;
        }

        void await_resume() const noexcept {}
    };

    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }

    /// The stop token operations awaited in this coroutine observe.
    const portico::stop_token& stop_token() const noexcept { return stop_token_; }
    void set_stop_token(portico::stop_token token) noexcept { stop_token_ = std::move(token); }

    void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }

private:
    std::coroutine_handle<> continuation_ = std::noop_coroutine();
    portico::stop_token stop_token_;
};

/// True for promise types that carry a stop token (all of portico's).
template <class Promise>
concept stop_token_provider = requires(const Promise& p) {
    { p.stop_token() } -> std::convertible_to<const portico::stop_token&>;
};

/// The stop token of the coroutine `h`, or an empty token for foreign
/// coroutine types.
template <class Promise>
portico::stop_token stop_token_of(std::coroutine_handle<Promise> h) noexcept
{
    if constexpr (stop_token_provider<Promise>) {
        return h.promise().stop_token();
    } else {
        return {};
    }
}

/// The stop token of the coroutine `h` itself, not a copy (no reference
/// count): valid while the coroutine lives, which is as long as an awaiter
/// in its frame does. An empty token for foreign coroutine types.
template <class Promise>
const portico::stop_token& stop_token_ref(std::coroutine_handle<Promise> h) noexcept
{
    if constexpr (stop_token_provider<Promise>) {
        return h.promise().stop_token();
    } else {
        static const portico::stop_token none;
        return none;
    }
}

template <class T>
class task_promise final : public task_promise_base {
public:
    task<T> get_return_object() noexcept;

    void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }

    template <class U = T>
        requires std::constructible_from<T, U&&>
    void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>)
    {
        result_.template emplace<1>(std::forward<U>(value));
    }

    T take_result()
    {
        if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
        assert(result_.index() == 1 && "task result read before the task completed");
        return std::move(std::get<1>(result_));
    }

private:
    std::variant<std::monostate, T, std::exception_ptr> result_;
};

template <class T>
class task_promise<T&> final : public task_promise_base {
public:
    task<T&> get_return_object() noexcept;

    void unhandled_exception() noexcept { exception_ = std::current_exception(); }
    void return_value(T& value) noexcept { value_ = std::addressof(value); }

    T& take_result()
    {
        if (exception_) std::rethrow_exception(exception_);
        assert(value_ && "task result read before the task completed");
        return *value_;
    }

private:
    T* value_ = nullptr;
    std::exception_ptr exception_;
};

template <>
class task_promise<void> final : public task_promise_base {
public:
    task<void> get_return_object() noexcept;

    void unhandled_exception() noexcept { exception_ = std::current_exception(); }
    void return_void() noexcept {}

    void take_result()
    {
        if (exception_) std::rethrow_exception(exception_);
    }

private:
    std::exception_ptr exception_;
};

} // namespace detail

/// A lazily started coroutine producing a T (or void, or a reference).
///
/// Nothing runs until the task is awaited; awaiting it resumes the task by
/// symmetric transfer and, when it finishes, resumes the awaiter the same way,
/// so nesting depth never grows the stack. An exception that escapes the
/// task's body is rethrown from the co_await. The awaited task inherits the
/// awaiting coroutine's stop token unless one was set on it explicitly.
///
/// A task is move-only and owns its frame: destroying a task that was never
/// awaited (or has finished) frees it. It may be awaited once.
/// Thread safety: a task object is not shared between threads; the coroutine
/// may of course resume on any thread its operations complete on.
///
/// Awaiting it (co_await): continues at once if the task already finished;
/// otherwise makes the awaiting coroutine the task's continuation, passes on its
/// stop token (unless one was set on the task) and transfers to the task.
/// await_resume yields the task's result or rethrows its exception.
template <class T>
class [[nodiscard]] task {
public:
    /// The coroutine promise type, which makes a function returning task<T> a
    /// coroutine.
    using promise_type = detail::task_promise<T>;
    /// What awaiting the task yields.
    using value_type = T;

    task() noexcept = default;
    /// Takes ownership of the coroutine frame `h` (as
    /// promise_type::get_return_object() does).
    explicit task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    /// Takes over `other`'s coroutine; `other` is left empty (valid() is
    /// false).
    task(task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    /// Destroys the coroutine frame this task owns, if any, and takes over
    /// `other`'s; `other` is left empty (valid() is false).
    task& operator=(task&& other) noexcept
    {
        if (this != &other) {
            destroy();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { destroy(); }

    /// True if the task holds a coroutine (it was not moved from).
    [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(handle_); }
    /// True once the coroutine ran to completion (or threw).
    [[nodiscard]] bool done() const noexcept { return !handle_ || handle_.done(); }

    /// Sets the stop token the task's operations observe, instead of
    /// inheriting the awaiter's. Call before the task is started.
    void set_stop_token(portico::stop_token token) noexcept
    {
        assert(handle_);
        handle_.promise().set_stop_token(std::move(token));
    }

    /// The awaiter of `co_await task`: starts the task by symmetric transfer,
    /// passing on the awaiter's stop token; yields the result or rethrows.
    struct awaiter {
        /// The awaited coroutine; the task still owns it.
        std::coroutine_handle<promise_type> handle;

        /// @name Awaiter protocol
        /// @{

        /// The awaiter protocol, which co_await calls (see the class comment).
        bool await_ready() const noexcept { return handle.done(); }

        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> awaiting) noexcept
        {
            auto& promise = handle.promise();
            promise.set_continuation(awaiting);
            if (!promise.stop_token().stop_possible()) {
                promise.set_stop_token(detail::stop_token_of(awaiting));
            }
            return handle;
        }

        decltype(auto) await_resume() { return handle.promise().take_result(); }
        /// @}
    };

    /// Starts the task and suspends the caller until it finishes; yields its
    /// result or rethrows its exception.
    awaiter operator co_await() && noexcept
    {
        assert(handle_ && "awaiting an empty task");
        return awaiter{handle_};
    }
    /// As operator co_await() &&, for a task awaited as an lvalue (the task
    /// keeps owning its frame either way).
    awaiter operator co_await() & noexcept
    {
        assert(handle_ && "awaiting an empty task");
        return awaiter{handle_};
    }

    /// The coroutine handle, still owned by the task (for custom schedulers).
    [[nodiscard]] std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }

    /// Gives up ownership of the frame: the caller must destroy it.
    [[nodiscard]] std::coroutine_handle<promise_type> release() noexcept { return std::exchange(handle_, {}); }

private:
    void destroy() noexcept
    {
        if (handle_) handle_.destroy();
        handle_ = {};
    }

    std::coroutine_handle<promise_type> handle_;
};

namespace detail {

template <class T>
task<T> task_promise<T>::get_return_object() noexcept
{
    return task<T>{std::coroutine_handle<task_promise>::from_promise(*this)};
}

template <class T>
task<T&> task_promise<T&>::get_return_object() noexcept
{
    return task<T&>{std::coroutine_handle<task_promise>::from_promise(*this)};
}

inline task<void> task_promise<void>::get_return_object() noexcept
{
    return task<void>{std::coroutine_handle<task_promise>::from_promise(*this)};
}

} // namespace detail

PORTICO_NAMESPACE_END
