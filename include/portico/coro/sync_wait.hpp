// portico: sync_wait — block the calling thread until an awaitable completes.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/result_promise.hpp>
#include <portico/stop_token.hpp>

#include <condition_variable>
#include <coroutine>
#include <exception>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

class sync_wait_event {
public:
    void set() noexcept
    {
        // RACE: notify while holding the lock, so the waiter cannot return and
        // destroy this event between our store and our notify.
        std::lock_guard lock(mutex_);
        set_ = true;
        cv_.notify_one();
    }

    void wait() noexcept
    {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return set_; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool set_ = false;
};

template <class T>
class sync_wait_task {
public:
    class promise_type : public result_promise<T> {
    public:
        sync_wait_task get_return_object() noexcept
        {
            return sync_wait_task{std::coroutine_handle<promise_type>::from_promise(*this)};
        }

        struct final_awaiter {
            bool await_ready() const noexcept { return false; }
            // NOTE: the waiting thread destroys this frame as soon as the event
            // is set; nothing after set() may touch the frame.
            void await_suspend(std::coroutine_handle<promise_type> h) const noexcept { h.promise().event_->set(); }
            void await_resume() const noexcept {}
        };
        final_awaiter final_suspend() const noexcept { return {}; }

        sync_wait_event* event_ = nullptr;
    };

    explicit sync_wait_task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    sync_wait_task(sync_wait_task&&) = delete;
    ~sync_wait_task() { handle_.destroy(); }

    T run(portico::stop_token token)
    {
        sync_wait_event event;
        auto& promise = handle_.promise();
        promise.event_ = &event;
        promise.set_stop_token(std::move(token));
        handle_.resume();
        event.wait();
        if constexpr (std::is_void_v<T>) {
            promise.rethrow_if_failed();
        } else {
            return promise.take();
        }
    }

private:
    std::coroutine_handle<promise_type> handle_;
};

template <class T, class A>
sync_wait_task<T> make_sync_wait_task(A&& a)
{
    if constexpr (std::is_void_v<T>) {
        co_await static_cast<A&&>(a);
    } else {
        // NOTE: co_yield hands the value over without requiring T to be
        // default constructible or assignable.
        co_yield co_await static_cast<A&&>(a);
    }
}

} // namespace detail

/// Runs `a` to completion, blocking the calling thread, and returns its
/// result (or rethrows its exception). The awaitable starts on the calling
/// thread and may finish on any other; the operations inside observe `token`.
///
/// Never call it from a thread that must run the work being waited for (a
/// pool thread of the io_context the awaitable needs, with one thread): that
/// deadlocks. Thread safety: any number of threads may call it concurrently.
template <awaitable A>
auto sync_wait(A&& a, portico::stop_token token = {}) -> await_result_t<A>
{
    using result = await_result_t<A>;
    if constexpr (std::is_reference_v<result>) {
        using pointer = std::add_pointer_t<result>;
        auto ptr =
            sync_wait([](A&& inner) -> task<pointer> { co_return std::addressof(co_await static_cast<A&&>(inner)); }(
                                        static_cast<A&&>(a)),
                      std::move(token));
        return static_cast<result>(*ptr);
    } else {
        auto t = detail::make_sync_wait_task<result>(static_cast<A&&>(a));
        return t.run(std::move(token));
    }
}

PORTICO_NAMESPACE_END
