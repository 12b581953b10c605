// portico: write_driver — the long-lived coroutines that write a
// packet_stream's queue (the driver) and wake it late (the kicker).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/frame_tracking.hpp>
#include <portico/stop_token.hpp>

#include <coroutine>
#include <exception>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The coroutine that performs a packet_stream's writes (see
/// docs/design/framing.md): started when a packet arrives at an idle queue,
/// parked when the queue is empty. It is nobody's caller, so no writer waits
/// for other writers' packets, and its operations observe only the stream's
/// own stop token (close), never a writer's.
class write_driver {
public:
    struct promise_type : frame_allocation {
        portico::stop_token token;

        write_driver get_return_object() noexcept
        {
            return write_driver{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        std::suspend_always final_suspend() const noexcept { return {}; }
        void return_void() const noexcept {}
        // The body catches nothing that can throw; an escape is a bug.
        void unhandled_exception() const noexcept { std::terminate(); }
        [[nodiscard]] const portico::stop_token& stop_token() const noexcept { return token; }
    };

    write_driver() noexcept = default;
    explicit write_driver(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    write_driver(write_driver&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    write_driver& operator=(write_driver&& other) noexcept
    {
        std::swap(handle_, other.handle_);
        return *this;
    }
    ~write_driver()
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
