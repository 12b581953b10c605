// portico: deadlines on any awaitable.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/stop_token.hpp>

#include <chrono>
#include <concepts>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

template <class T>
inline constexpr bool is_io_result = false;
template <class T>
inline constexpr bool is_io_result<io_result<T>> = true;

/// with_deadline's result: an io_result<T> stays itself, anything else R
/// becomes io_result<R>.
template <class R>
using deadline_result_t = std::conditional_t<is_io_result<R>, R, io_result<R>>;

} // namespace detail

/// Awaits `a` with a deadline: at `deadline`, `a` is asked to stop through
/// its stop token. Yields what `a` yields, as an io_result; when the deadline
/// passed and `a` then finished with operation_aborted (the usual answer to a
/// stop request), the error becomes timed_out.
///
/// If `a` completed successfully even though the deadline passed (it
/// finished before it saw the request), its result is kept: no data an
/// operation already produced is thrown away. For a non-io_result `a`, the
/// error is timed_out whenever the deadline passed first.
///
/// A stop request on the awaiting coroutine's token reaches `a` as well.
/// Allocates a few coroutine frames and starts one timer per call: for a
/// deadline on every packet of a connection, packet_stream's own timeouts
/// (packet_stream_options) cost neither. `a` is moved into the returned
/// task, so it must be movable: wrap a non-movable operation awaiter in a
/// task. Thread safety: awaited once.
template <awaitable A>
    requires std::move_constructible<A>
[[nodiscard]] task<detail::deadline_result_t<std::remove_cvref_t<await_result_t<A>>>>
with_deadline(io_context& ctx, std::chrono::steady_clock::time_point deadline, A a)
{
    using R = std::remove_cvref_t<await_result_t<A>>;
    portico::stop_source op_stop;
    portico::stop_source timer_stop;
    portico::stop_callback forward(co_await get_stop_token(), [&]() noexcept {
        op_stop.request_stop();
        timer_stop.request_stop();
    });
    bool expired = false;
    std::optional<non_void_t<R>> value;

    auto run_op = [](A inner, std::optional<non_void_t<R>>& out, portico::stop_source& timer) -> task<> {
        if constexpr (std::is_void_v<R>) {
            co_await std::move(inner);
            out.emplace();
        } else {
            out.emplace(co_await std::move(inner));
        }
        timer.request_stop();
    }(std::move(a), value, timer_stop);
    run_op.set_stop_token(op_stop.get_token());

    auto run_timer = [](io_context& c, std::chrono::steady_clock::time_point t, bool& fired,
                        portico::stop_source& op) -> task<> {
        auto [ec] = co_await c.sleep_until(t);
        if (!ec) {
            fired = true;
            op.request_stop();
        }
    }(ctx, deadline, expired, op_stop);
    run_timer.set_stop_token(timer_stop.get_token());

    co_await when_all(std::move(run_op), std::move(run_timer));

    if constexpr (std::is_same_v<R, io_result<void>>) {
        if (expired && value->error() == errc::operation_aborted) co_return R(make_error_code(errc::timed_out));
        co_return std::move(*value);
    } else if constexpr (detail::is_io_result<R>) {
        if (expired && value->error() == errc::operation_aborted) {
            co_return R(make_error_code(errc::timed_out), std::move(value->value_unchecked()));
        }
        co_return std::move(*value);
    } else if constexpr (std::is_void_v<R>) {
        co_return io_result<void>(expired ? make_error_code(errc::timed_out) : std::error_code{});
    } else {
        co_return io_result<R>(expired ? make_error_code(errc::timed_out) : std::error_code{}, std::move(*value));
    }
}

/// with_deadline(ctx, now + timeout, a).
template <awaitable A>
    requires std::move_constructible<A>
[[nodiscard]] auto with_timeout(io_context& ctx, std::chrono::steady_clock::duration timeout, A a)
{
    return with_deadline(ctx, std::chrono::steady_clock::now() + timeout, std::move(a));
}

PORTICO_NAMESPACE_END
