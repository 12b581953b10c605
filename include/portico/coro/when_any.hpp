// portico: when_any — the first of several awaitables to finish wins.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/join_child.hpp>
#include <portico/stop_token.hpp>

#include <atomic>
#include <cstddef>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

PORTICO_NAMESPACE_BEGIN

/// The result of when_any: which awaitable finished first and its result.
template <class Value>
struct when_any_result {
    /// Position of the winning awaitable in the argument list (or vector).
    std::size_t index;
    /// Its result: for the variadic form a std::variant whose active
    /// alternative is `index`; for the vector form the result itself.
    Value value;
};

namespace detail {

struct when_any_state {
    static constexpr std::size_t no_winner = static_cast<std::size_t>(-1);

    portico::stop_source source;
    std::atomic<std::size_t> winner{no_winner};

    // The first child to finish, with a result or an exception, wins and
    // cancels the others; they are still awaited before when_any returns.
    static void child_done(void* context, std::size_t index, bool) noexcept
    {
        auto* self = static_cast<when_any_state*>(context);
        std::size_t expected = no_winner;
        if (self->winner.compare_exchange_strong(expected, index, std::memory_order_acq_rel)) {
            self->source.request_stop();
        }
    }
};

template <std::size_t I, class Variant, class Children>
Variant take_winner(Children& children, std::size_t index)
{
    if constexpr (I < std::tuple_size_v<Children>) {
        if (I == index) return Variant(std::in_place_index<I>, std::get<I>(children).take());
        return take_winner<I + 1, Variant>(children, index);
    } else {
        // Unreachable: the winner index always names a child.
        std::terminate();
    }
}

} // namespace detail

/// Awaits the awaitables concurrently; the first to finish wins. The others
/// are asked to stop through their stop token and are awaited before
/// when_any returns, so nothing outlives it. Yields the winner's index and
/// result; if the winner threw, its exception is rethrown (the losers'
/// exceptions are discarded).
///
/// The awaitables start one after another on the awaiting thread, each running
/// until it first suspends; if one finishes at once, the rest are started with
/// a stopped token. A stop request on the awaiting coroutine's token is
/// forwarded to all of them. Thread safety: awaited once, like any task.
template <awaitable... As>
[[nodiscard]] task<when_any_result<std::variant<non_void_t<std::remove_cvref_t<await_result_t<As>>>...>>>
when_any(As... as)
{
    static_assert(sizeof...(As) > 0, "when_any needs at least one awaitable");
    using variant = std::variant<non_void_t<std::remove_cvref_t<await_result_t<As>>>...>;
    detail::when_any_state state;
    portico::stop_callback forward(co_await get_stop_token(), [&state]() noexcept { state.source.request_stop(); });
    detail::join_latch latch(sizeof...(As));
    auto children = std::make_tuple(detail::make_join_child(std::move(as))...);
    co_await detail::join_all_op(latch, [&] {
        detail::start_children(children, latch, state.source, &detail::when_any_state::child_done, &state);
    });
    const std::size_t index = state.winner.load(std::memory_order_acquire);
    co_return when_any_result<variant>{index, detail::take_winner<0, variant>(children, index)};
}

/// The vector form of when_any: `value` is the winner's result itself.
/// Allocates one frame per awaitable. Throws std::invalid_argument if `as`
/// is empty.
template <awaitable A>
[[nodiscard]] task<when_any_result<non_void_t<std::remove_cvref_t<await_result_t<A>>>>> when_any(std::vector<A> as)
{
    if (as.empty()) throw std::invalid_argument("portico::when_any: no awaitables");
    detail::when_any_state state;
    portico::stop_callback forward(co_await get_stop_token(), [&state]() noexcept { state.source.request_stop(); });
    detail::join_latch latch(as.size());
    auto children = detail::make_join_children(as);
    co_await detail::join_all_op(latch, [&] {
        detail::start_children(children, latch, state.source, &detail::when_any_state::child_done, &state);
    });
    const std::size_t index = state.winner.load(std::memory_order_acquire);
    co_return when_any_result<non_void_t<std::remove_cvref_t<await_result_t<A>>>>{index, children[index].take()};
}

PORTICO_NAMESPACE_END
