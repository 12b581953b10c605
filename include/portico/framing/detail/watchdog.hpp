// portico: watchdog — the detached coroutine that enforces a packet_stream's
// timeouts, and the clock it reads.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/frame_tracking.hpp>
#include <portico/framing/stream_concepts.hpp>
#include <portico/stop_token.hpp>

#include <chrono>
#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

template <class Stream>
struct stream_clock {
    using type = std::chrono::steady_clock;
};
template <class Stream>
    requires timed_stream<Stream>
struct stream_clock<Stream> {
    using type = typename std::remove_cvref_t<decltype(std::declval<Stream&>().context())>::clock;
};

/// The detached coroutine that enforces a packet_stream's timeouts: it owns
/// its frame (freed when it finishes) and holds a reference on the stream's
/// state while it runs. Its sleeps observe the stream's stop token, so
/// closing the stream ends it.
class watchdog {
public:
    struct promise_type : frame_allocation {
        portico::stop_token token;
        void* owner = nullptr;
        void (*release)(void*) noexcept = nullptr;

        watchdog get_return_object() noexcept
        {
            return watchdog{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        auto final_suspend() const noexcept
        {
            struct last {
                bool await_ready() const noexcept { return false; }
                void await_suspend(std::coroutine_handle<promise_type> h) const noexcept
                {
                    void* state = h.promise().owner;
                    auto* drop = h.promise().release;
                    h.destroy();
                    drop(state); // may destroy the state: nothing runs after it
                }
                void await_resume() const noexcept {}
            };
            return last{};
        }
        void return_void() const noexcept {}
        void unhandled_exception() const noexcept { std::terminate(); }
        [[nodiscard]] const portico::stop_token& stop_token() const noexcept { return token; }
    };

    /// Starts the coroutine, which from then on owns itself.
    void start(portico::stop_token token, void* owner, void (*release)(void*) noexcept) &&
    {
        auto& p = handle_.promise();
        p.token = std::move(token);
        p.owner = owner;
        p.release = release;
        std::exchange(handle_, {}).resume();
    }

    watchdog(watchdog&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    watchdog& operator=(watchdog&&) = delete;
    ~watchdog()
    {
        if (handle_) handle_.destroy();
    }

private:
    explicit watchdog(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    std::coroutine_handle<promise_type> handle_;
};

} // namespace detail

PORTICO_NAMESPACE_END
