// portico: detached coroutines — started once, they own their frame and
// free it when they end, then tell their owner.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/stop_token.hpp>

#include <coroutine>
#include <exception>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// A coroutine nobody awaits (io_context::spawn, task_group's children,
/// packet_stream's watchdog). Made suspended; start() hands it a stop token
/// and an end hook and runs it until it first suspends. When its body ends it destroys its own frame and only then
/// calls `on_end(owner, error)`, with the exception that escaped the body (or
/// null): a waiter the hook wakes never sees the frame alive (frame counters
/// read zero), and the hook may destroy the owner.
///
/// Frames come from frame_allocation, so a detached coroutine destroyed
/// while an I/O operation is pending is kept until the operation completes.
class detached {
public:
    /// Called once, after the frame is gone. Must not throw.
    using end_fn = void (*)(void* owner, std::exception_ptr error) noexcept;

    struct promise_type : frame_allocation {
        detached get_return_object() noexcept
        {
            return detached{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }

        struct final_awaiter {
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<promise_type> h) const noexcept
            {
                auto& p = h.promise();
                const end_fn hook = p.on_end;
                void* const to = p.owner;
                std::exception_ptr failure = std::move(p.error);
                // NOTE: free the frame before telling the owner, so that
                // when the owner (or whoever it wakes) checks, no frame of
                // ours is alive; nothing of the frame is touched after this.
                h.destroy();
                hook(to, std::move(failure));
            }
            void await_resume() const noexcept {}
        };
        final_awaiter final_suspend() const noexcept { return {}; }

        void unhandled_exception() noexcept { error = std::current_exception(); }
        void return_void() const noexcept {}
        [[nodiscard]] const portico::stop_token& stop_token() const noexcept { return token; }

        portico::stop_token token;
        end_fn on_end = nullptr;
        void* owner = nullptr;
        std::exception_ptr error;
    };

    detached(detached&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    detached& operator=(detached&&) = delete;
    /// A coroutine never started is destroyed with its handle.
    ~detached()
    {
        if (handle_) handle_.destroy();
    }

    /// Runs the coroutine on this thread until it first suspends; from then
    /// on it owns itself. `on_end(owner, error)` runs when it ends.
    void start(portico::stop_token token, end_fn on_end, void* owner) &&
    {
        auto& p = handle_.promise();
        p.token = std::move(token);
        p.on_end = on_end;
        p.owner = owner;
        std::exchange(handle_, {}).resume();
    }

private:
    explicit detached(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    std::coroutine_handle<promise_type> handle_;
};

/// The end hook of a detached coroutine that must not fail: an escaped
/// exception is a bug, and terminates.
inline void terminate_on_error(std::exception_ptr error) noexcept
{
    if (error) std::terminate();
}

} // namespace detail

PORTICO_NAMESPACE_END
