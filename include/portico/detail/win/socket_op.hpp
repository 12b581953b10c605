// portico: the base of every socket operation — start, cancel, complete.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/stop_token.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <optional>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// Consecutive operations one thread may complete inline before it must go
/// through the port: a connection whose data is always ready cannot starve
/// the others. (See docs/design/operations.md.)
inline constexpr unsigned inline_completion_budget = 16;

/// How a socket's completions arrive.
struct socket_ref {
    scheduler* sched = nullptr;
    SOCKET handle = INVALID_SOCKET;
    /// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set: a call that succeeds at
    /// once queues no packet.
    bool skips_on_success = false;
};

/// Base of every socket awaiter (CRTP). Derived provides
/// `DWORD start(DWORD& bytes) noexcept`: it makes the Win32 call and returns 0
/// for an immediate success (with `bytes` set), WSA_IO_PENDING, or the error.
///
/// State machine shared by the starting thread, the completing thread and the
/// stop callback (any thread):
///   idle -> running          start returned pending; the completion resumes us
///   idle -> done             the completion arrived before start finished;
///                            the starting thread continues inline instead
///   idle -> cancel_pending   stop requested before start finished; the
///                            starting thread issues the CancelIoEx
///   running                  the stop callback issues CancelIoEx itself
/// Whoever moves the state last resumes the coroutine, so it resumes once.
template <class Derived>
class socket_op : public overlapped_op {
public:
    explicit socket_op(const socket_ref& s) noexcept : overlapped_op(&socket_op::on_complete), socket_(s) {}

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        continuation_ = awaiting;
        if (socket_.handle == INVALID_SOCKET) {
            error_ = make_error_code(errc::operation_aborted); // closed before this call
            return false;
        }
        portico::stop_token token = detail::stop_token_of(awaiting);
        if (token.stop_requested()) {
            error_ = make_error_code(errc::operation_aborted);
            return false;
        }
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});

        scheduler& sched = *socket_.sched;
        sched.work_started();
        DWORD bytes = 0;
        const DWORD result = static_cast<Derived*>(this)->start(bytes);
        if (result == 0 && socket_.skips_on_success) {
            // No packet will come: the result is ours now.
            bytes_ = bytes;
            if (++inline_streak() <= inline_completion_budget) {
                sched.count(counter::inline_completions);
                sched.work_finished();
                return false;
            }
            // Over budget: go through the port like everyone else.
            inline_streak() = 0;
            state_.store(state::running, std::memory_order_release);
            sched.post_started(this);
            return true;
        }
        if (result != 0 && result != WSA_IO_PENDING) {
            // Failed at once: no packet either.
            sched.work_finished();
            error_ = socket_error(result);
            return false;
        }
        // NOTE: a packet is coming and may already have been dispatched on
        // another thread. on_complete() only resumes us if it sees `running`,
        // so until the exchange below succeeds this frame is still ours.
        auto s = state_.load(std::memory_order_acquire);
        for (;;) {
            if (s == state::done) return false;
            if (s == state::cancel_pending) {
                sched.count(counter::cancel_calls);
                ::CancelIoEx(reinterpret_cast<HANDLE>(socket_.handle), this);
            }
            // RACE: after this succeeds the completion may resume the
            // coroutine and destroy this awaiter at once: touch nothing more.
            if (state_.compare_exchange_weak(s, state::running, std::memory_order_acq_rel)) return true;
        }
    }

protected:
    std::error_code error_;
    std::size_t bytes_ = 0;
    socket_ref socket_;

private:
    enum class state : unsigned char { idle, cancel_pending, running, done };

    struct canceller {
        socket_op* op;
        void operator()() const noexcept
        {
            auto s = op->state_.load(std::memory_order_acquire);
            while (s == state::idle) {
                if (op->state_.compare_exchange_weak(s, state::cancel_pending, std::memory_order_acq_rel)) return;
            }
            // NOTE: the awaiter cannot be destroyed while this runs:
            // ~stop_callback waits for a callback running on another thread.
            if (s == state::running) {
                op->socket_.sched->count(counter::cancel_calls);
                ::CancelIoEx(reinterpret_cast<HANDLE>(op->socket_.handle), op);
            }
        }
    };

    static unsigned& inline_streak() noexcept
    {
        auto* t = current_thread_state;
        static thread_local unsigned off_pool = 0;
        return t != nullptr ? t->inline_streak : off_pool;
    }

    static void on_complete(overlapped_op* base, ULONG_PTR status, DWORD bytes) noexcept
    {
        auto* self = static_cast<socket_op*>(base);
        self->bytes_ = bytes;
        if (status != 0) {
            // The packet carries an NTSTATUS; ask Winsock for the error it
            // means for this socket (what the call would have returned).
            DWORD transferred = 0;
            DWORD flags = 0;
            if (!::WSAGetOverlappedResult(self->socket_.handle, self, &transferred, FALSE, &flags)) {
                self->error_ = last_socket_error();
            } else {
                self->error_ = socket_error(static_cast<DWORD>(status));
            }
        }
        if (self->state_.exchange(state::done, std::memory_order_acq_rel) == state::running) {
            self->continuation_.resume();
        }
        // Otherwise await_suspend has not finished: it sees `done` and
        // continues inline on the starting thread.
    }

    std::coroutine_handle<> continuation_;
    std::atomic<state> state_{state::idle};
    std::optional<portico::stop_callback<canceller>> cancel_;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
