// A scripted byte stream for the framing tests (in the spirit of Asio's
// test_stream and corosio's mocket): each read_some takes what it can from
// the next scripted chunk, or returns the next scripted error; after the
// script, eof. Reads complete at once, so no io_context is needed.
// write_some records what it is given, takes at most write_limit() bytes per
// call, fails with scripted errors, and can be held (suspended) until the
// test releases it or the writer's stop token fires: a peer that does not
// read.
#pragma once

#include <portico/buffer.hpp>
#include <portico/coro/task.hpp>
#include <portico/error.hpp>
#include <portico/stop_token.hpp>

#include "support/framing.hpp"

#include <algorithm>
#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

namespace portico::test {

class mock_stream {
public:
    /// The next read returns (up to) these bytes.
    void push(std::span<const std::byte> bytes) { script_->steps.push_back({{bytes.begin(), bytes.end()}, {}}); }
    /// The next read fails with `ec`.
    void push_error(std::error_code ec) { script_->steps.push_back({{}, ec}); }
    /// read_some calls so far.
    [[nodiscard]] std::size_t reads() const noexcept { return script_->reads; }
    /// Bytes still scripted and not read.
    [[nodiscard]] std::size_t unread() const noexcept
    {
        std::size_t n = 0;
        for (const auto& s : script_->steps) n += s.data.size();
        return n;
    }

    struct read_op {
        io_result<std::size_t> result;
        bool await_ready() const noexcept { return true; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        io_result<std::size_t> await_resume() const noexcept { return result; }
    };

    read_op read_some(std::span<mutable_buffer> buffers)
    {
        auto& s = *script_;
        ++s.reads;
        if (s.steps.empty()) return {{make_error_code(errc::eof), 0}};
        auto& front = s.steps.front();
        if (front.error) {
            const auto ec = front.error;
            s.steps.pop_front();
            return {{ec, 0}};
        }
        const std::size_t done = copy_into(buffers, front.data);
        front.data.erase(front.data.begin(), front.data.begin() + static_cast<std::ptrdiff_t>(done));
        if (front.data.empty()) s.steps.pop_front();
        return {{{}, done}};
    }

    /// Each write takes at most `n` bytes (a short write); 0: no limit.
    void write_limit(std::size_t n)
    {
        std::lock_guard lock(script_->mutex);
        script_->write_limit = n;
    }
    /// The next write fails with `ec` (after any scripted before it).
    void push_write_error(std::error_code ec)
    {
        std::lock_guard lock(script_->mutex);
        script_->write_errors.push_back(ec);
    }
    /// From now on writes suspend until release_writes() (or until the
    /// writer's stop token fires: operation_aborted).
    void hold_writes()
    {
        std::lock_guard lock(script_->mutex);
        script_->hold = true;
    }
    /// Lets writes complete again, completing a held one on this thread.
    void release_writes();
    /// True while a write is held.
    [[nodiscard]] bool write_held() const
    {
        std::lock_guard lock(script_->mutex);
        return script_->held != nullptr;
    }
    /// Everything written so far, in order.
    [[nodiscard]] std::vector<std::byte> written() const
    {
        std::lock_guard lock(script_->mutex);
        return script_->written;
    }
    /// write_some calls that took bytes or failed (not counting holds).
    [[nodiscard]] std::size_t writes() const
    {
        std::lock_guard lock(script_->mutex);
        return script_->writes;
    }

    class write_op;

    template <class Sequence>
    write_op write_some(const Sequence& buffers);

private:
    struct step {
        std::vector<std::byte> data;
        std::error_code error;
    };
    struct script {
        std::deque<step> steps;
        std::size_t reads = 0;
        mutable std::mutex mutex; // the write side: the test and the writer's threads
        std::vector<std::byte> written;
        std::size_t writes = 0;
        std::size_t write_limit = 0;
        std::deque<std::error_code> write_errors;
        bool hold = false;
        write_op* held = nullptr;

        // Performs one write of `buffers` now (the mutex held).
        io_result<std::size_t> write(std::span<const const_buffer> buffers)
        {
            ++writes;
            if (!write_errors.empty()) {
                const auto ec = write_errors.front();
                write_errors.pop_front();
                return {ec, 0};
            }
            std::size_t left = write_limit == 0 ? ~std::size_t{0} : write_limit;
            std::size_t done = 0;
            for (const auto& b : buffers) {
                const std::size_t n = std::min(left, b.size());
                const auto* p = static_cast<const std::byte*>(b.data());
                written.insert(written.end(), p, p + n);
                done += n;
                left -= n;
                if (left == 0) break;
            }
            return {{}, done};
        }
    };
    // Shared, so a copy handed to packet_stream and the test see one script.
    std::shared_ptr<script> script_ = std::make_shared<script>();
};

/// Awaiter of mock_stream::write_some: completes at once unless writes are
/// held. A held write is finished exactly once, by release_writes() or by
/// its stop callback, whichever comes first; like a socket operation, it
/// resumes its coroutine only if that coroutine has already suspended.
class mock_stream::write_op {
public:
    write_op(std::shared_ptr<script> s, std::vector<const_buffer> buffers)
        : script_(std::move(s)), buffers_(std::move(buffers))
    {}

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        handle_ = h;
        auto token = detail::stop_token_of(h);
        {
            std::lock_guard lock(script_->mutex);
            if (!script_->hold) {
                result_ = script_->write(buffers_);
                return false;
            }
            if (token.stop_requested()) {
                result_ = {make_error_code(errc::operation_aborted), 0};
                return false;
            }
            script_->held = this;
        }
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        // Whoever finishes the op after this sees `waiting` and resumes us.
        int expected = starting;
        return phase_.compare_exchange_strong(expected, waiting, std::memory_order_acq_rel);
    }

    io_result<std::size_t> await_resume() noexcept
    {
        cancel_.reset();
        return result_;
    }

    // Finishes a held op whose result was set by the party that took it out
    // of script::held (under the mutex): that party alone calls this.
    void complete()
    {
        if (phase_.exchange(finished, std::memory_order_acq_rel) == waiting) handle_.resume();
    }

private:
    static constexpr int starting = 0, waiting = 1, finished = 2;
    struct canceller {
        write_op* op;
        void operator()() const
        {
            {
                std::lock_guard lock(op->script_->mutex);
                if (op->script_->held != op) return; // released meanwhile
                op->script_->held = nullptr;
                op->result_ = {make_error_code(errc::operation_aborted), 0};
            }
            op->complete();
        }
    };
    friend class mock_stream;

    std::shared_ptr<script> script_;
    std::vector<const_buffer> buffers_;
    io_result<std::size_t> result_;
    std::coroutine_handle<> handle_;
    std::atomic<int> phase_{starting};
    std::optional<portico::stop_callback<canceller>> cancel_;
};

inline void mock_stream::release_writes()
{
    write_op* op = nullptr;
    {
        std::lock_guard lock(script_->mutex);
        script_->hold = false;
        op = std::exchange(script_->held, nullptr);
        if (op != nullptr) op->result_ = script_->write(op->buffers_);
    }
    // Taken out of `held` under the lock: ours alone to complete.
    if (op != nullptr) op->complete();
}

template <class Sequence>
mock_stream::write_op mock_stream::write_some(const Sequence& buffers)
{
    std::vector<const_buffer> copy;
    detail::for_each_buffer<const_buffer>(buffers, [&](const const_buffer& b) { copy.push_back(b); });
    return write_op(script_, std::move(copy));
}

} // namespace portico::test
