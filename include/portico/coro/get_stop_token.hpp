// portico: reading the current task's stop token.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/stop_token.hpp>

#include <coroutine>

PORTICO_NAMESPACE_BEGIN

/// Awaiter returned by get_stop_token(); never actually suspends.
///
/// Awaiting it (co_await): reads the awaiting coroutine's stop token in
/// await_suspend and continues at once, without suspending (a coroutine type that
/// carries no token gets an empty one, which can never stop). await_resume yields
/// the token.
class get_stop_token_op {
public:
    /// @name Awaiter protocol
    /// @{

    /// The awaiter protocol, which co_await calls (see the class comment).
    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) noexcept
    {
        token_ = detail::stop_token_of(h);
        return false;
    }

    portico::stop_token await_resume() noexcept { return std::move(token_); }
    /// @}

private:
    portico::stop_token token_;
};

/// `portico::stop_token t = co_await portico::get_stop_token();` — the stop token
/// the current coroutine's operations observe (inherited from its awaiter, or
/// set by when_any, task_group, with_timeout...). Never suspends.
[[nodiscard]] inline get_stop_token_op get_stop_token() noexcept { return {}; }

PORTICO_NAMESPACE_END
