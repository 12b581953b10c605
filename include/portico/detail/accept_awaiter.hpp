// portico: what both backends' accept pools share (detail/win/accept_pool.hpp,
// detail/uring/accept_pool.hpp): the waiter a coroutine in accept() is to
// its pool, and the awaiter base of tcp_acceptor::accept().
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/error.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// What a pool sees of a coroutine awaiting accept(): a node of its waiter
/// list and the result it hands over. Who resumes it is settled by
/// `handshake`: a waiter finished before it suspended continues inline;
/// after, the finisher resumes it inline (on a pool thread) or posts it.
/// `Op` is the backend's operation (posted to resume it from elsewhere),
/// `Socket` its owned socket.
template <class Op, class Socket>
struct basic_accept_waiter : Op {
    using op_type = Op;

    explicit basic_accept_waiter(typename Op::complete_fn fn) noexcept : Op(fn) {}

    list_hook<basic_accept_waiter> hook;
    /// Its place in a list of waiters taken out of the pool to be finished
    /// outside the lock (a second link: once out of the waiter list,
    /// unlink() must not find it there).
    basic_accept_waiter* finish_next = nullptr;
    Socket socket;
    std::optional<endpoint> remote;
    std::error_code error;
    std::coroutine_handle<> continuation;
    resume_handshake handshake;
    /// Whether the awaiting frame comes from frame_allocation (so it can be
    /// kept alive past its destruction), and where it is then kept.
    bool deferrable = false;
    deferred_frame deferred;
};

/// The awaiter base of tcp_acceptor::accept(): queues on the pool, is
/// finished by the pool's accept, a close or its stop callback, and keeps
/// its frame alive if destroyed while a posted resumption is on its way.
/// The public accept_op adds await_resume.
///
/// `Pool` provides add_ref(), release(), take_or_wait(Waiter&) (true: done
/// at once, with the result or an error), unlink(Waiter&) (true if it was
/// still queued) and finish(Waiter&, bool resume_inline).
template <class Pool, class Waiter>
class basic_accept_awaiter : private Waiter {
public:
    /// `pool` is null when the acceptor is not listening.
    explicit basic_accept_awaiter(Pool* pool) noexcept : Waiter(&basic_accept_awaiter::on_posted), pool_(pool)
    {
        if (pool_ != nullptr) pool_->add_ref();
    }

    basic_accept_awaiter(const basic_accept_awaiter&) = delete;
    basic_accept_awaiter& operator=(const basic_accept_awaiter&) = delete;
    /// Moves an accept not awaited yet (when_all, with_timeout... take
    /// awaitables by value).
    basic_accept_awaiter(basic_accept_awaiter&& other) noexcept
        : Waiter(&basic_accept_awaiter::on_posted), pool_(other.pool_)
    {
        assert(other.handshake.load(std::memory_order_relaxed) == resume_handshake::state::idle && !other.cancel_ &&
               "moving an accept that was already started");
        if (pool_ != nullptr) pool_->add_ref();
    }
    basic_accept_awaiter& operator=(basic_accept_awaiter&&) = delete;

    ~basic_accept_awaiter()
    {
        // Waits for a stop callback running on another thread: it touches us.
        cancel_.reset();
        if (pool_ == nullptr) return;
        // Destroyed while suspended and still queued: nobody will finish it.
        // Destroyed while suspended after a finisher took it from the list:
        // a posted resumption may be on its way to it, so the frame stays
        // until it arrives (as socket_op does). Register before publishing
        // `orphaned`, which lets the posted resumption free the frame.
        if (!pool_->unlink(*this) && this->handshake.load() == resume_handshake::state::running) {
            if (!this->deferrable || !orphan_registry::for_this_thread().add(this, &this->deferred)) std::terminate();
            (void)this->handshake.orphan();
        }
        // A connection handed over but never taken by await_resume is closed
        // with `socket`.
        pool_->release();
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        this->continuation = awaiting;
        this->deferrable = std::is_base_of_v<frame_allocation, Promise>;
        if (pool_ == nullptr) {
            this->error = make_error_code(errc::bad_state);
            return false;
        }
        portico::stop_token token = stop_token_of(awaiting);
        if (token.stop_requested()) {
            this->error = make_error_code(errc::operation_aborted);
            return false;
        }
        if (pool_->take_or_wait(*this)) return false;
        // Queued: from here the pool's accept on another thread may finish us.
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        // RACE: after this succeeds the finisher may resume the coroutine and
        // destroy this awaiter at once: touch nothing more.
        return this->handshake.suspend();
    }

protected:
    /// The error, or nothing and then the accepted socket (taken: a second
    /// call finds it closed) and the peer, if known.
    [[nodiscard]] std::error_code result() const noexcept { return this->error; }
    [[nodiscard]] std::uintptr_t take_socket() noexcept { return static_cast<std::uintptr_t>(this->socket.release()); }
    [[nodiscard]] const std::optional<endpoint>& peer() const noexcept { return this->remote; }

private:
    using op_type = typename Waiter::op_type;

    struct canceller {
        basic_accept_awaiter* op;
        void operator()() const noexcept
        {
            // Whoever unlinks the waiter finishes it; if the pool's accept
            // or close() got there first, there is nothing to cancel.
            if (op->pool_->unlink(*op)) {
                op->error = make_error_code(errc::operation_aborted);
                op->pool_->finish(*op, false);
            }
        }
    };

    // A waiter finished from outside a pool thread (or for another thread)
    // comes back through the scheduler.
    static void on_posted(op_type* base, std::uintptr_t, std::uint32_t) noexcept
    {
        auto* self = static_cast<basic_accept_awaiter*>(static_cast<Waiter*>(base));
        if (self->handshake.complete() == resume_handshake::state::orphaned) {
            // The frame was destroyed after this resumption was posted.
            if (self->deferred.arrive()) frame_allocation::release(self->deferred.block, self->deferred.size);
            return;
        }
        self->continuation.resume();
    }

    Pool* pool_;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

} // namespace detail

PORTICO_NAMESPACE_END
