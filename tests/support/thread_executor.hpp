// A minimal thread-pool executor for testing the platform-neutral coroutine
// layer natively, where there is no io_context.
#pragma once

#include <portico/coro/task.hpp>
#include <portico/stop_token.hpp>

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace portico::test {

class thread_executor {
public:
    explicit thread_executor(unsigned threads)
    {
        for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
    }
    thread_executor(const thread_executor&) = delete;
    thread_executor& operator=(const thread_executor&) = delete;
    ~thread_executor()
    {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
    }

    struct schedule_op {
        thread_executor& executor;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) { executor.push(h); }
        void await_resume() const noexcept {}
    };

    /// `co_await ex.schedule();` continues on one of the executor's threads.
    schedule_op schedule() noexcept { return {*this}; }

    bool running_in_this_thread() const noexcept
    {
        for (auto& t : threads_) {
            if (t.get_id() == std::this_thread::get_id()) return true;
        }
        return false;
    }

private:
    void push(std::coroutine_handle<> h)
    {
        {
            std::lock_guard lock(mutex_);
            queue_.push_back(h);
        }
        cv_.notify_one();
    }

    void run()
    {
        std::unique_lock lock(mutex_);
        for (;;) {
            cv_.wait(lock, [&] { return done_ || !queue_.empty(); });
            if (queue_.empty()) return;
            auto h = queue_.front();
            queue_.pop_front();
            lock.unlock();
            h.resume();
            lock.lock();
        }
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::coroutine_handle<>> queue_;
    bool done_ = false;
    std::vector<std::thread> threads_;
};

/// `co_await wait_for_stop{};` suspends until the awaiting coroutine's stop
/// token is requested, then resumes on the thread that requested it (at once
/// if it already was). The awaiting coroutine must have a stoppable token.
class wait_for_stop {
public:
    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        handle_ = h;
        portico::stop_token token = detail::stop_token_of(h);
        if (!token.stop_possible()) throw std::logic_error("wait_for_stop: the token can never be stopped");
        callback_.emplace(std::move(token), resumer{this});
        // RACE: whoever of us and the callback comes second resumes (or
        // continues); the callback may already have run inline above.
        return !arrived_.exchange(true, std::memory_order_acq_rel);
    }

    void await_resume() const noexcept {}

private:
    struct resumer {
        wait_for_stop* self;
        void operator()() const noexcept
        {
            if (self->arrived_.exchange(true, std::memory_order_acq_rel)) self->handle_.resume();
        }
    };

    std::coroutine_handle<> handle_;
    std::atomic<bool> arrived_{false};
    std::optional<portico::stop_callback<resumer>> callback_;
};

} // namespace portico::test
