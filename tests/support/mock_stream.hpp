// A scripted byte stream for the framing tests (in the spirit of Asio's
// test_stream and corosio's mocket).
//
// Reads: each read_some takes what it can from the next scripted chunk, or
// returns the next scripted error; after the script, eof, or, with
// hold_reads(), the read waits for the next push (a peer that has not sent
// anything yet). Writes: write_some records what it is given, takes at most
// write_limit() bytes per call, fails with scripted errors, and can be held
// until the test releases it (a peer that does not read). A held operation
// ends with operation_aborted when its stop token fires. context() gives
// timers on a manual clock, for deadlines.
//
// Copies share one script, so the copy handed to packet_stream and the test
// see the same stream. The script is guarded by a mutex: writes come from
// writer threads while the test inspects them.
#pragma once

#include <portico/buffer.hpp>
#include <portico/coro/task.hpp>
#include <portico/error.hpp>
#include <portico/stop_token.hpp>

#include "support/framing.hpp"
#include "support/manual_clock.hpp"

#include <algorithm>
#include <array>
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
#include <utility>
#include <vector>

namespace portico::test {

class mock_stream {
    struct script;

public:
    /// The next read returns (up to) these bytes (completing a held read).
    void push(std::span<const std::byte> bytes) { add_step({{bytes.begin(), bytes.end()}, {}}); }
    /// The next read fails with `ec` (completing a held read).
    void push_error(std::error_code ec) { add_step({{}, ec}); }
    /// From now on a read with nothing scripted waits for the next push.
    void hold_reads()
    {
        std::lock_guard lock(script_->mutex);
        script_->hold_reads = true;
    }
    /// True while a read waits.
    [[nodiscard]] bool read_held() const
    {
        std::lock_guard lock(script_->mutex);
        return script_->held_read != nullptr;
    }
    /// read_some calls so far.
    [[nodiscard]] std::size_t reads() const
    {
        std::lock_guard lock(script_->mutex);
        return script_->reads;
    }
    /// Bytes still scripted and not read.
    [[nodiscard]] std::size_t unread() const
    {
        std::lock_guard lock(script_->mutex);
        std::size_t n = 0;
        for (const auto& s : script_->steps) n += s.data.size();
        return n;
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
    /// From now on writes wait until release_writes().
    void hold_writes()
    {
        std::lock_guard lock(script_->mutex);
        script_->hold_writes = true;
    }
    /// Lets writes complete again, completing a held one on this thread.
    void release_writes();
    /// True while a write is held.
    [[nodiscard]] bool write_held() const
    {
        std::lock_guard lock(script_->mutex);
        return script_->held_write != nullptr;
    }
    /// Makes room for `n` written bytes up front (so writes allocate nothing).
    void reserve_written(std::size_t n)
    {
        std::lock_guard lock(script_->mutex);
        script_->written.reserve(n);
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

    /// Timers on the manual clock (shared by every copy of this stream).
    [[nodiscard]] manual_timers& context() const noexcept { return script_->timers; }

    class read_op;
    class write_op;

    read_op read_some(std::span<mutable_buffer> buffers);
    template <class Sequence>
    write_op write_some(const Sequence& buffers);

private:
    /// An operation the script may finish later. Finished exactly once, by
    /// whoever takes it out of the script's `held_*` slot under the mutex;
    /// resumes its coroutine only if that coroutine has already suspended.
    class held_op {
    public:
        io_result<std::size_t> await_resume() noexcept
        {
            cancel_.reset();
            return result_;
        }

    protected:
        explicit held_op(std::shared_ptr<script> s) : script_(std::move(s)) {}

        // Parks the op in `slot` (it is not finished yet); returns whether the
        // coroutine suspends.
        template <class Promise>
        bool hold(std::coroutine_handle<Promise> h, held_op*& slot, portico::stop_token token)
        {
            handle_ = h;
            slot_ = &slot;
            if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
            int expected = starting;
            return phase_.compare_exchange_strong(expected, waiting, std::memory_order_acq_rel);
        }

    public:
        void complete()
        {
            if (phase_.exchange(finished, std::memory_order_acq_rel) == waiting) handle_.resume();
        }

        std::shared_ptr<script> script_;
        io_result<std::size_t> result_;

    private:
        static constexpr int starting = 0, waiting = 1, finished = 2;
        struct canceller {
            held_op* op;
            void operator()() const
            {
                {
                    std::lock_guard lock(op->script_->mutex);
                    if (*op->slot_ != op) return; // finished meanwhile
                    *op->slot_ = nullptr;
                    op->result_ = {make_error_code(errc::operation_aborted), 0};
                }
                op->complete();
            }
        };

        std::coroutine_handle<> handle_;
        held_op** slot_ = nullptr;
        std::atomic<int> phase_{starting};
        std::optional<portico::stop_callback<canceller>> cancel_;
    };

    struct step {
        std::vector<std::byte> data;
        std::error_code error;
    };

    struct script {
        mutable std::mutex mutex;
        std::deque<step> steps;
        std::size_t reads = 0;
        bool hold_reads = false;
        held_op* held_read = nullptr;
        std::vector<std::byte> written;
        std::size_t writes = 0;
        std::size_t write_limit = 0;
        std::deque<std::error_code> write_errors;
        bool hold_writes = false;
        held_op* held_write = nullptr;
        manual_timers timers;

        // One read into `buffers` now (the mutex held).
        io_result<std::size_t> read(std::span<const mutable_buffer> buffers)
        {
            if (steps.empty()) return {make_error_code(errc::eof), 0};
            auto& front = steps.front();
            if (front.error) {
                const auto ec = front.error;
                steps.pop_front();
                return {ec, 0};
            }
            const std::size_t done = copy_into(buffers, front.data);
            front.data.erase(front.data.begin(), front.data.begin() + static_cast<std::ptrdiff_t>(done));
            if (front.data.empty()) steps.pop_front();
            return {{}, done};
        }

        // One write of `buffers` now (the mutex held).
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

    void add_step(step s);

    std::shared_ptr<script> script_ = std::make_shared<script>();
};

/// Awaiter of mock_stream::read_some.
class mock_stream::read_op : public mock_stream::held_op {
public:
    read_op(std::shared_ptr<script> s, std::span<mutable_buffer> buffers) : held_op(std::move(s)), buffers_(buffers) {}

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        auto token = detail::stop_token_of(h);
        {
            std::lock_guard lock(script_->mutex);
            ++script_->reads;
            if (!script_->steps.empty() || !script_->hold_reads) {
                result_ = script_->read(buffers_);
                return false;
            }
            if (token.stop_requested()) {
                result_ = {make_error_code(errc::operation_aborted), 0};
                return false;
            }
            script_->held_read = this;
        }
        return hold(h, script_->held_read, std::move(token));
    }

private:
    friend class mock_stream;
    std::span<mutable_buffer> buffers_;
};

/// Awaiter of mock_stream::write_some.
class mock_stream::write_op : public mock_stream::held_op {
public:
    template <class Sequence>
    write_op(std::shared_ptr<script> s, const Sequence& buffers) : held_op(std::move(s))
    {
        detail::for_each_buffer<const_buffer>(buffers, [&](const const_buffer& b) {
            if (count_ < buffers_.size()) buffers_[count_++] = b;
        });
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        auto token = detail::stop_token_of(h);
        {
            std::lock_guard lock(script_->mutex);
            if (!script_->hold_writes) {
                result_ = script_->write(std::span(buffers_.data(), count_));
                return false;
            }
            if (token.stop_requested()) {
                result_ = {make_error_code(errc::operation_aborted), 0};
                return false;
            }
            script_->held_write = this;
        }
        return hold(h, script_->held_write, std::move(token));
    }

private:
    friend class mock_stream;
    // Up to 64 buffers, as one WSASend: the mock allocates nothing per write.
    std::array<const_buffer, 64> buffers_;
    std::size_t count_ = 0;
};

inline mock_stream::read_op mock_stream::read_some(std::span<mutable_buffer> buffers)
{
    return read_op(script_, buffers);
}

template <class Sequence>
mock_stream::write_op mock_stream::write_some(const Sequence& buffers)
{
    return write_op(script_, buffers);
}

inline void mock_stream::add_step(step s)
{
    held_op* op = nullptr;
    {
        std::lock_guard lock(script_->mutex);
        script_->steps.push_back(std::move(s));
        op = std::exchange(script_->held_read, nullptr);
        if (op != nullptr) op->result_ = script_->read(static_cast<read_op*>(op)->buffers_);
    }
    // Taken out of the slot under the lock: ours alone to complete.
    if (op != nullptr) op->complete();
}

inline void mock_stream::release_writes()
{
    held_op* op = nullptr;
    {
        std::lock_guard lock(script_->mutex);
        script_->hold_writes = false;
        op = std::exchange(script_->held_write, nullptr);
        if (op != nullptr) {
            auto* w = static_cast<write_op*>(op);
            op->result_ = script_->write(std::span(w->buffers_.data(), w->count_));
        }
    }
    if (op != nullptr) op->complete();
}

} // namespace portico::test
