// portico: the base of every socket operation — start, cancel, complete.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/socket.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/stop_token.hpp>

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// Base of every socket awaiter (CRTP). Derived provides
/// `DWORD start(DWORD& bytes) noexcept`: it makes the Win32 call and returns 0
/// for an immediate success (with `bytes` set), WSA_IO_PENDING, or the error;
/// and `static constexpr bool message_size_is_a_warning`: true for datagram
/// receives, where WSAEMSGSIZE means "completed, truncated", not "failed".
///
/// Who resumes the coroutine is settled by a resume_handshake (see its
/// state table): the starting thread, the completing thread and the stop
/// callback (any thread) race, and exactly one resumes. A stop that arrives
/// before the call returned pending is carried out by the starting thread
/// (CancelIoEx), one that arrives later by the stop callback. An op whose
/// frame is destroyed while the kernel holds it is orphaned: its completion
/// frees the frame.
template <class Derived>
class socket_op : public overlapped_op {
public:
    explicit socket_op(const socket_ref& s) noexcept : overlapped_op(&socket_op::on_complete), socket_(s) {}

    socket_op(const socket_op&) = delete;
    socket_op& operator=(const socket_op&) = delete;
    /// Moves an op that was not awaited yet (when_all, with_timeout and
    /// friends take awaitables by value).
    socket_op(socket_op&& other) noexcept
        : overlapped_op(std::move(other)), error_(other.error_), bytes_(other.bytes_), socket_(other.socket_)
    {
        assert(other.handshake_.load(std::memory_order_relaxed) == resume_handshake::state::idle && !other.cancel_ &&
               "moving a socket operation that was already started");
    }
    socket_op& operator=(socket_op&&) = delete;

    /// Destroyed while pending (its coroutine's frame was destroyed without
    /// being resumed): the kernel still owns this OVERLAPPED, so the frame's
    /// memory must outlive it. The op asks the kernel to cancel and leaves
    /// the frame block to its completion (see frame_allocation).
    ~socket_op()
    {
        // Waits for a stop callback running on another thread.
        cancel_.reset();
        if (handshake_.load() != resume_handshake::state::running) return;
        // Register before publishing `orphaned`: the completion may free the
        // block the moment it sees it, and the registry must already know.
        if (!deferrable_ || !orphan_registry::for_this_thread().add(this, &deferred_)) {
            // A frame portico did not allocate cannot be kept alive.
            std::terminate();
        }
        if (!handshake_.orphan()) {
            // Completed concurrently and being resumed elsewhere: the caller
            // destroyed a coroutine another thread is resuming.
            std::terminate();
        }
        ::CancelIoEx(reinterpret_cast<HANDLE>(socket_.handle), this);
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        continuation_ = awaiting;
        deferrable_ = std::is_base_of_v<frame_allocation, Promise>;
        if (socket_.handle == INVALID_SOCKET) {
            error_ = make_error_code(errc::operation_aborted); // closed before this call
            return false;
        }
        // NOTE: the promise's own token, not a copy: it outlives this op,
        // which lives in the awaiting coroutine's frame.
        const portico::stop_token& token = detail::stop_token_ref(awaiting);
        if (token.stop_requested()) {
            error_ = make_error_code(errc::operation_aborted);
            return false;
        }
        if (token.stop_possible()) cancel_.emplace(token, canceller{this});

        scheduler& sched = *socket_.sched;
        sched.work_started();
        DWORD bytes = 0;
        DWORD result = static_cast<Derived*>(this)->start(bytes);
        if (result == 0 && socket_.skips_on_success) {
            // No packet will come: the result is ours now.
            bytes_ = bytes;
            InternalHigh = bytes;
            // The turn's budget (io_context::options::inline_budget): a
            // connection whose data is always ready waits behind the others
            // rather than keep the thread. (See docs/design/operations.md.)
            if (sched.take_inline_turn()) {
                sched.work_finished();
                return false;
            }
            // NOTE: suspend() before handing the op on: nobody else knows it
            // yet, and once posted the packet may resume us on another thread.
            (void)handshake_.suspend();
            sched.queue_ready(this);
            return true;
        }
        if constexpr (Derived::message_size_is_a_warning) {
            if (result == WSAEMSGSIZE) {
                // NOTE: a datagram larger than the buffers completes with the
                // warning STATUS_BUFFER_OVERFLOW: the receive ran, and like a
                // success it queues a packet unless skip-on-success applies.
                // Treating it as a failure would complete the op twice.
                if (socket_.skips_on_success) {
                    bytes_ = static_cast<std::size_t>(InternalHigh);
                    error_ = make_error_code(errc::datagram_truncated);
                    sched.work_finished();
                    return false;
                }
                result = WSA_IO_PENDING;
            }
        }
        if (result != 0 && result != WSA_IO_PENDING) {
            // Failed at once: no packet either.
            sched.work_finished();
            error_ = socket_error(result);
            return false;
        }
        // NOTE: a packet is coming and may already have been dispatched on
        // another thread. on_complete() only resumes us if it sees `running`,
        // so until suspend() publishes it this frame is still ours; after it
        // returns true the coroutine may be resumed and gone: touch nothing.
        return handshake_.suspend([this, &sched]() noexcept {
            sched.count(counter::cancel_calls);
            ::CancelIoEx(reinterpret_cast<HANDLE>(socket_.handle), this);
        });
    }

protected:
    /// What start() returns for a Winsock call that `succeeded` or not: 0,
    /// or the thread's last error (WSA_IO_PENDING for a pending call).
    static DWORD call_result(bool succeeded) noexcept
    {
        return succeeded ? 0 : static_cast<DWORD>(::WSAGetLastError());
    }

    std::error_code error_;
    std::size_t bytes_ = 0;
    socket_ref socket_;

    /// The coroutine a completion resumes: the awaiting one, unless Derived
    /// has a next step (`std::coroutine_handle<> next_step(awaiting)`): a
    /// read_all() that came up short goes on with the rest first.
    std::coroutine_handle<> next_to_resume() noexcept
    {
        if constexpr (requires(Derived& d) { d.next_step(continuation_); }) {
            return static_cast<Derived*>(this)->next_step(continuation_);
        } else {
            return continuation_;
        }
    }

private:
    struct canceller {
        socket_op* op;
        void operator()() const noexcept
        {
            // NOTE: the awaiter cannot be destroyed while this runs:
            // ~stop_callback waits for a callback running on another thread.
            if (op->handshake_.request_cancel()) {
                op->socket_.sched->count(counter::cancel_calls);
                ::CancelIoEx(reinterpret_cast<HANDLE>(op->socket_.handle), op);
            }
        }
    };

    static void on_complete(overlapped_op* base, std::uintptr_t status, std::uint32_t bytes) noexcept
    {
        auto* self = static_cast<socket_op*>(base);
        self->bytes_ = bytes;
        // RACE: the socket may be closed and its handle value already reused
        // by a new socket, so the status is mapped without the handle.
        if (status != 0) self->error_ = completion_error(status);
        const auto before = self->handshake_.complete();
        if (before == resume_handshake::state::running) {
            self->next_to_resume().resume();
        } else if (before == resume_handshake::state::orphaned) {
            // The frame was destroyed while the kernel held this op. Free the
            // block if its operator delete already ran; otherwise that does.
            if (self->deferred_.arrive()) frame_allocation::release(self->deferred_.block, self->deferred_.size);
        }
        // Otherwise await_suspend has not finished: it sees `done` and
        // continues inline on the starting thread.
    }

    std::coroutine_handle<> continuation_;
    resume_handshake handshake_;
    bool deferrable_ = false;
    deferred_frame deferred_;
    std::optional<detail::stop_registration<canceller>> cancel_;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
