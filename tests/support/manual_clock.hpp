// A clock that moves only when the test says so, and timers on it: for
// testing deadlines natively, deterministically and without waiting.
#pragma once

#include <portico/coro/task.hpp>
#include <portico/error.hpp>
#include <portico/stop_token.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace portico::test {

/// The process-wide manual time (tests run one at a time). Starts at 1 s.
struct manual_clock {
    using rep = std::int64_t;
    using period = std::nano;
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::time_point<manual_clock>;
    static constexpr bool is_steady = true;

    static time_point now() noexcept { return time_point(duration(current().load(std::memory_order_acquire))); }
    static std::atomic<rep>& current() noexcept
    {
        static std::atomic<rep> t{1'000'000'000};
        return t;
    }
};

/// Timers on manual_clock. sleep_until() suspends until advance() moves the
/// clock to its deadline (success) or its stop token fires
/// (operation_aborted); either finishes it exactly once, and resumes its
/// coroutine only if that coroutine has already suspended.
class manual_timers {
public:
    using clock = manual_clock;

    class sleep_op {
    public:
        sleep_op(manual_timers& timers, clock::time_point deadline) noexcept : timers_(&timers), deadline_(deadline) {}
        sleep_op(sleep_op&& other) noexcept : timers_(other.timers_), deadline_(other.deadline_) {}

        bool await_ready() const noexcept { return deadline_ <= clock::now(); }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h)
        {
            handle_ = h;
            auto token = detail::stop_token_of(h);
            if (token.stop_requested()) {
                result_ = make_error_code(errc::operation_aborted);
                return false;
            }
            {
                std::lock_guard lock(timers_->mutex_);
                timers_->sleepers_.push_back(this);
            }
            if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
            int expected = starting;
            return phase_.compare_exchange_strong(expected, waiting, std::memory_order_acq_rel);
        }

        io_result<void> await_resume() noexcept
        {
            cancel_.reset();
            return {result_};
        }

    private:
        friend class manual_timers;
        static constexpr int starting = 0, waiting = 1, finished = 2;

        struct canceller {
            sleep_op* op;
            void operator()() const
            {
                if (!op->timers_->take(op)) return; // fired meanwhile
                op->result_ = make_error_code(errc::operation_aborted);
                op->complete();
            }
        };

        // Called only by the party that took the op out of the list.
        void complete()
        {
            if (phase_.exchange(finished, std::memory_order_acq_rel) == waiting) handle_.resume();
        }

        manual_timers* timers_;
        clock::time_point deadline_;
        std::error_code result_;
        std::coroutine_handle<> handle_;
        std::atomic<int> phase_{starting};
        std::optional<portico::stop_callback<canceller>> cancel_;
    };

    [[nodiscard]] sleep_op sleep_until(clock::time_point t) noexcept { return sleep_op(*this, t); }
    [[nodiscard]] sleep_op sleep_for(clock::duration d) noexcept { return sleep_op(*this, clock::now() + d); }

    /// Moves the clock on by `d`, then fires every due timer, earliest first,
    /// on this thread.
    void advance(clock::duration d)
    {
        clock::current().fetch_add(d.count(), std::memory_order_acq_rel);
        for (;;) {
            sleep_op* due = nullptr;
            {
                std::lock_guard lock(mutex_);
                auto it = std::min_element(sleepers_.begin(), sleepers_.end(),
                                           [](sleep_op* a, sleep_op* b) { return a->deadline_ < b->deadline_; });
                if (it == sleepers_.end() || (*it)->deadline_ > clock::now()) return;
                due = *it;
                sleepers_.erase(it);
            }
            due->complete();
        }
    }

    /// Moves the clock on in steps of `step` up to `total`, firing timers at
    /// each step (as time passing would).
    void advance_by_steps(clock::duration total, clock::duration step)
    {
        for (clock::duration done{}; done < total; done += step) advance(step);
    }

    /// As io_context::defer: `h` is held until the test calls
    /// run_deferred(), as a pool thread holds it until its handler returns.
    void defer(std::coroutine_handle<> h)
    {
        std::lock_guard lock(mutex_);
        deferred_.push_back(h);
    }

    /// Resumes, on this thread, everything deferred so far (and whatever
    /// that defers in turn). Yields how many were resumed.
    std::size_t run_deferred()
    {
        std::size_t count = 0;
        for (;;) {
            std::vector<std::coroutine_handle<>> now;
            {
                std::lock_guard lock(mutex_);
                if (deferred_.empty()) return count;
                now.swap(deferred_);
            }
            for (auto h : now) h.resume();
            count += now.size();
            // Hand the storage back, so that deferring does not allocate in
            // the tests that count allocations.
            now.clear();
            std::lock_guard lock(mutex_);
            if (deferred_.empty()) deferred_.swap(now);
        }
    }

    /// Resumptions deferred and not yet run.
    [[nodiscard]] std::size_t deferred() const
    {
        std::lock_guard lock(mutex_);
        return deferred_.size();
    }

    /// Timers waiting.
    [[nodiscard]] std::size_t pending() const
    {
        std::lock_guard lock(mutex_);
        return sleepers_.size();
    }

private:
    bool take(sleep_op* op)
    {
        std::lock_guard lock(mutex_);
        auto it = std::find(sleepers_.begin(), sleepers_.end(), op);
        if (it == sleepers_.end()) return false;
        sleepers_.erase(it);
        return true;
    }

    mutable std::mutex mutex_;
    std::vector<sleep_op*> sleepers_;
    std::vector<std::coroutine_handle<>> deferred_;
};

} // namespace portico::test
