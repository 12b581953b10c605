// portico: the result storage shared by portico's internal wrapper coroutines.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/stop_token.hpp>

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// Promise base for a wrapper coroutine that awaits one awaitable and keeps
/// its result (delivered with co_yield, so T need not be default
/// constructible or assignable) or its exception, plus the stop token the
/// awaited operations observe. Used by sync_wait, when_all and when_any.
template <class T>
class result_promise : public frame_allocation {
public:
    std::suspend_always initial_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }
    void return_void() noexcept {}

    template <class U>
    std::suspend_never yield_value(U&& value) noexcept(std::is_nothrow_constructible_v<non_void_t<T>, U&&>)
    {
        value_.emplace(std::forward<U>(value));
        return {};
    }

    const portico::stop_token& stop_token() const noexcept { return stop_token_; }
    void set_stop_token(portico::stop_token token) noexcept { stop_token_ = std::move(token); }

    bool failed() const noexcept { return static_cast<bool>(exception_); }
    void rethrow_if_failed() const
    {
        if (exception_) std::rethrow_exception(exception_);
    }
    /// The result; rethrows the stored exception instead if there is one.
    non_void_t<T> take()
    {
        rethrow_if_failed();
        return std::move(*value_);
    }

private:
    portico::stop_token stop_token_;
    std::exception_ptr exception_;
    std::optional<non_void_t<T>> value_;
};

/// The body of every such wrapper: await `a`, hand its result to the promise.
template <class Wrapper, class A>
Wrapper await_into(A a)
{
    if constexpr (std::is_void_v<await_result_t<A>>) {
        co_await std::move(a);
        co_yield std::monostate{};
    } else {
        co_yield co_await std::move(a);
    }
}

} // namespace detail

PORTICO_NAMESPACE_END
