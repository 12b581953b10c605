// portico: awaitable concepts and the result type of a co_await.
#pragma once

#include <portico/config.hpp>

#include <concepts>
#include <coroutine>
#include <type_traits>
#include <utility>
#include <variant>

PORTICO_NAMESPACE_BEGIN

namespace detail {

template <class A>
concept has_member_co_await = requires(A&& a) { static_cast<A&&>(a).operator co_await(); };

template <class A>
concept has_free_co_await = requires(A&& a) { operator co_await(static_cast<A&&>(a)); };

/// The awaiter that `co_await a` uses.
template <class A>
decltype(auto) get_awaiter(A&& a)
{
    if constexpr (has_member_co_await<A>) {
        return static_cast<A&&>(a).operator co_await();
    } else if constexpr (has_free_co_await<A>) {
        return operator co_await(static_cast<A&&>(a));
    } else {
        return static_cast<A&&>(a);
    }
}

template <class W>
concept awaiter = requires(W& w, std::coroutine_handle<> h) {
    { w.await_ready() } -> std::convertible_to<bool>;
    w.await_resume();
};

} // namespace detail

/// True for anything that can be the operand of co_await in a portico task.
template <class A>
concept awaitable = detail::awaiter<std::remove_reference_t<decltype(detail::get_awaiter(std::declval<A>()))>>;

/// The type `co_await std::declval<A>()` produces.
template <awaitable A>
using await_result_t =
    decltype(std::declval<std::remove_reference_t<decltype(detail::get_awaiter(std::declval<A>()))>&>().await_resume());

/// void becomes std::monostate, so results can be stored in tuples and variants.
template <class T>
using non_void_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

PORTICO_NAMESPACE_END
