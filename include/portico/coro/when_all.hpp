// portico: when_all — await several awaitables concurrently, get every result.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/join_child.hpp>
#include <portico/stop_token.hpp>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

PORTICO_NAMESPACE_BEGIN

namespace detail {

// A failed child asks its siblings to stop: their results would be discarded
// anyway, and a server wants the whole group torn down promptly.
inline void when_all_child_done(void* context, std::size_t, bool failed) noexcept
{
    if (failed) static_cast<portico::stop_source*>(context)->request_stop();
}

} // namespace detail

/// Awaits every awaitable concurrently and yields a tuple of their results
/// (void results become std::monostate, references are copied).
///
/// The awaitables start one after another on the awaiting thread, each running
/// until it first suspends, and may finish on any thread. They observe a stop
/// token that is stopped when the awaiting coroutine's token is, or when one of
/// them throws. Once all have finished, the first exception by position is
/// rethrown. Thread safety: the returned task is awaited once, like any task.
template <awaitable... As>
[[nodiscard]] task<std::tuple<non_void_t<std::remove_cvref_t<await_result_t<As>>>...>> when_all(As... as)
{
    portico::stop_source source;
    portico::stop_callback forward(co_await get_stop_token(), [&source]() noexcept { source.request_stop(); });
    detail::join_latch latch(sizeof...(As));
    auto children = std::make_tuple(detail::make_join_child(std::move(as))...);
    co_await detail::join_all_op(
        latch, [&] { detail::start_children(children, latch, source, &detail::when_all_child_done, &source); });
    co_return std::apply(
        [](auto&... child) {
            (child.rethrow_if_failed(), ...);
            return std::make_tuple(child.take()...);
        },
        children);
}

/// Awaits every awaitable in `as` concurrently and yields their results in
/// the same order; otherwise as the variadic when_all. Allocates one frame
/// per awaitable.
template <awaitable A>
[[nodiscard]] task<std::vector<non_void_t<std::remove_cvref_t<await_result_t<A>>>>> when_all(std::vector<A> as)
{
    portico::stop_source source;
    portico::stop_callback forward(co_await get_stop_token(), [&source]() noexcept { source.request_stop(); });
    detail::join_latch latch(as.size());
    auto children = detail::make_join_children(as);
    co_await detail::join_all_op(
        latch, [&] { detail::start_children(children, latch, source, &detail::when_all_child_done, &source); });
    std::vector<non_void_t<std::remove_cvref_t<await_result_t<A>>>> results;
    results.reserve(children.size());
    for (auto& child : children) child.rethrow_if_failed();
    for (auto& child : children) results.push_back(child.take());
    co_return results;
}

PORTICO_NAMESPACE_END
