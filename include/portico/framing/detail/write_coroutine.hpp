// portico: write_coroutine — the type of a packet_stream's two long-lived
// write-side coroutines: the driver, which writes the queue, and the
// kicker, which wakes the driver late.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/stop_token.hpp>

#include <coroutine>
#include <exception>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// A coroutine its owner keeps for its whole life and resumes any number of
/// times (see docs/design/framing.md): made suspended, it never finishes on
/// its own and its frame goes with its owner (the stream's state), parked.
/// The write driver is one: it is nobody's caller, so no writer waits for
/// other writers' packets, and its operations observe only the stream's own
/// stop token (close), never a writer's. The kicker is the other. Who may
/// resume them, and when, is flush_state's table.
class write_coroutine {
public:
    struct promise_type : frame_allocation {
        portico::stop_token token;

        write_coroutine get_return_object() noexcept
        {
            return write_coroutine{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        std::suspend_always final_suspend() const noexcept { return {}; }
        void return_void() const noexcept {}
        // The body catches nothing that can throw; an escape is a bug.
        void unhandled_exception() const noexcept { std::terminate(); }
        [[nodiscard]] const portico::stop_token& stop_token() const noexcept { return token; }
    };

    write_coroutine() noexcept = default;
    explicit write_coroutine(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    write_coroutine(write_coroutine&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    write_coroutine& operator=(write_coroutine&& other) noexcept
    {
        std::swap(handle_, other.handle_);
        return *this;
    }
    ~write_coroutine()
    {
        if (handle_) handle_.destroy();
    }

    [[nodiscard]] explicit operator bool() const noexcept { return static_cast<bool>(handle_); }
    void resume() const { handle_.resume(); }
    [[nodiscard]] std::coroutine_handle<> handle() const noexcept { return handle_; }
    void set_stop_token(portico::stop_token token) noexcept { handle_.promise().token = std::move(token); }

private:
    std::coroutine_handle<promise_type> handle_;
};

} // namespace detail

PORTICO_NAMESPACE_END
