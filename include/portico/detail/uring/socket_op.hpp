// portico: the base of every socket operation on Linux — start, cancel,
// complete — over one io_uring request.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/uring/error_map.hpp>
#include <portico/detail/uring/operation.hpp>
#include <portico/detail/uring/scheduler.hpp>
#include <portico/detail/uring/socket.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>
#include <portico/stop_token.hpp>

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <system_error>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// Base of every socket awaiter (CRTP), as detail/win/socket_op.hpp is on
/// Windows. Derived provides `void prepare(io_uring_sqe&) noexcept`: it
/// fills the request (opcode, descriptor, buffers); this base sets its
/// user_data and submits it. And `static constexpr counter call_counter`:
/// the io_statistics counter of its requests.
///
/// Who resumes is settled by a resume_handshake: the starting thread, the
/// completing thread and the stop callback race, and exactly one resumes.
/// Every request completes through the ring, an immediate success too (the
/// kernel's inline completion still posts its entry), so there is no
/// skip-on-success path. A stop that arrives before the request was
/// submitted is carried out by the starting thread, one that arrives later
/// by the stop callback, on whatever thread it runs: both cancel on the ring
/// the op recorded when it submitted (scheduler::cancel, synchronous from
/// any thread). An op whose frame is destroyed while the kernel holds it is
/// orphaned: its completion frees the frame.
template <class Derived>
class socket_op : public operation {
public:
    explicit socket_op(const socket_ref& s) noexcept : operation(&socket_op::on_complete), socket_(s) {}

    socket_op(const socket_op&) = delete;
    socket_op& operator=(const socket_op&) = delete;
    /// Moves an op that was not awaited yet (when_all, with_timeout and
    /// friends take awaitables by value).
    socket_op(socket_op&& other) noexcept
        : operation(std::move(other)), error_(other.error_), bytes_(other.bytes_), socket_(other.socket_)
    {
        assert(other.handshake_.load(std::memory_order_relaxed) == resume_handshake::state::idle && !other.cancel_ &&
               "moving a socket operation that was already started");
    }
    socket_op& operator=(socket_op&&) = delete;

    /// Destroyed while pending: the kernel still holds the request (and its
    /// buffers), so the frame's memory must outlive it. The op asks for the
    /// cancel and leaves the frame block to its completion.
    ~socket_op()
    {
        // Waits for a stop callback running on another thread.
        cancel_.reset();
        if (handshake_.load() != resume_handshake::state::running) return;
        // RACE: registered before `orphaned` is published, because the
        // completion frees the block as soon as it sees that state. A frame
        // portico did not allocate cannot be kept alive: terminate.
        if (!deferrable_ || !orphan_registry::for_this_thread().add(this, &deferred_)) std::terminate();
        // Failing here means the completion is resuming this very frame on
        // another thread while it is destroyed: the caller's bug.
        if (!handshake_.orphan()) std::terminate();
        // NOTE: synchronous on the request's own ring, from whichever thread
        // destroys the frame: nothing is left on its way to that ring that
        // could name this address once the frame block is reused.
        socket_.sched->cancel(ring_, this);
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        continuation_ = awaiting;
        deferrable_ = std::is_base_of_v<frame_allocation, Promise>;
        if (socket_.handle < 0) {
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
        scheduler& sched = *socket_.sched;
        thread_state* const here = sched.this_thread();
        if (here == nullptr) {
            // NOTE: a request belongs to the thread that submitted it, and
            // fails with ECANCELED if that thread has exited by the time it
            // would complete (docs/design/uring.md). Only the pool's threads
            // outlive their requests, so from any other thread the start
            // moves to one of them. suspend() comes first: nobody knows the
            // op yet, and once posted the hop may run on another thread.
            hop_token_ = &token;
            // The hop keeps the socket's state alive and asks it whether a
            // close() came first (socket_state).
            socket_.state->acquire();
            (void)handshake_.suspend();
            // The op itself is the hop: its completion function is on_hop
            // until the hop has run (nothing else knows the op meanwhile).
            complete = &socket_op::on_hop;
            sched.post(this);
            return true;
        }
        return start(token, *here);
    }

protected:
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
    /// The posted step that starts an op on a pool thread (await_suspend).
    static void on_hop(operation* base, std::uintptr_t, std::uint32_t) noexcept
    {
        socket_op& self = *static_cast<socket_op*>(base);
        self.complete = &socket_op::on_complete;
        socket_state* const state = self.socket_.state;
        const auto before = self.handshake_.complete();
        if (before == resume_handshake::state::orphaned) {
            // The frame was destroyed during the hop: nothing was started.
            if (self.deferred_.arrive()) frame_allocation::release(self.deferred_.block, self.deferred_.size);
            state->release();
            return;
        }
        // Ours again (the coroutine is suspended and nothing else holds
        // the op): start it here, and resume here if it did not suspend.
        self.handshake_.reset();
        bool resume_here = false;
        {
            std::lock_guard lock(*state);
            if (state->closed) {
                self.error_ = make_error_code(errc::operation_aborted);
                resume_here = true;
            } else {
                // NOTE: once start() returns true the op may already be
                // resumed elsewhere and gone: only locals from here on.
                resume_here = !self.start(*self.hop_token_, *self.socket_.sched->this_thread());
            }
        }
        state->release();
        if (resume_here) self.next_to_resume().resume();
    }

    /// Registers the stop callback and submits the request, on a thread of
    /// the pool (or the one that awaits, if it is one). Returns false if the
    /// caller continues at once (refused, or completed before suspending).
    /// `here` is the calling thread's scheduler::this_thread().
    bool start(const portico::stop_token& token, thread_state& here)
    {
        if (token.stop_requested()) {
            error_ = make_error_code(errc::operation_aborted);
            return false;
        }
        if (token.stop_possible()) cancel_.emplace(token, canceller{this});

        scheduler& sched = *socket_.sched;
        scheduler::count(here, Derived::call_counter);
        sched.work_started();
        // NOTE: the ring is recorded, and the socket told, before the
        // request exists: a cancel or a close that follows the start (the
        // co_await's suspension) must find the ring that holds it.
        ring_ = static_cast<std::uint16_t>(here.slot->index);
        if (socket_.state != nullptr) socket_.state->note_ring(here.slot->bit);
        const std::error_code refused = scheduler::submit(here, [this](io_uring_sqe& sqe) {
            static_cast<Derived*>(this)->prepare(sqe);
            sqe.user_data = reinterpret_cast<std::uintptr_t>(static_cast<operation*>(this));
        });
        if (refused) {
            // Not started: no completion will come.
            sched.work_finished();
            error_ = refused.value() == EBUSY || refused.value() == EAGAIN ? make_error_code(errc::no_resources)
                                                                           : socket_error(refused.value());
            return false;
        }
        // NOTE: the completion may already have been taken on another
        // thread. on_complete() only resumes us if it sees `running`, so
        // until suspend() publishes it this frame is still ours; after it
        // returns true the coroutine may be resumed and gone: touch nothing.
        return handshake_.suspend([this, &sched]() noexcept { sched.cancel(ring_, this); });
    }

    struct canceller {
        socket_op* op;
        void operator()() const noexcept
        {
            // NOTE: the awaiter cannot be destroyed while this runs:
            // ~stop_callback waits for a callback running on another thread.
            // The cancel is synchronous on the op's ring, wherever this
            // runs, so it is over before the op can go.
            if (op->handshake_.request_cancel()) op->socket_.sched->cancel(op->ring_, op);
        }
    };

    static void on_complete(operation* base, std::uintptr_t status, std::uint32_t bytes) noexcept
    {
        auto* self = static_cast<socket_op*>(base);
        self->bytes_ = bytes;
        if (status != 0) self->error_ = socket_error(static_cast<int>(status));
        // An op that reads more of its result than the bytes (a datagram's
        // truncation) does it here, before anyone can resume it.
        if constexpr (requires(Derived& d) { d.completed(); }) static_cast<Derived*>(self)->completed();
        const auto before = self->handshake_.complete();
        if (before == resume_handshake::state::running) {
            self->next_to_resume().resume();
        } else if (before == resume_handshake::state::orphaned) {
            if (self->deferred_.arrive()) frame_allocation::release(self->deferred_.block, self->deferred_.size);
        }
        // Otherwise await_suspend has not finished: it sees `done` and
        // continues inline on the starting thread.
    }

    std::coroutine_handle<> continuation_;
    const portico::stop_token* hop_token_ = nullptr; // the awaiting promise's, for the hop
    resume_handshake handshake_;
    bool deferrable_ = false;
    std::uint16_t ring_ = 0; // the ring its request went to (start())
    deferred_frame deferred_;
    std::optional<detail::stop_registration<canceller>> cancel_;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
