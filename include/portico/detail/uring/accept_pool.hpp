// portico: the accept requests a tcp_acceptor keeps in the ring on Linux,
// and the coroutines waiting for what they accept — the io_uring
// counterpart of detail/win/accept_pool.hpp, with the same contract.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/uring/error_map.hpp>
#include <portico/detail/uring/operation.hpp>
#include <portico/detail/uring/scheduler.hpp>
#include <portico/detail/uring/sockaddr.hpp>
#include <portico/detail/uring/socket.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

class accept_pool;

/// One IORING_OP_ACCEPT kept in the ring on the listener. A slot is posted
/// (the kernel owns it and its address buffer), ready (holds an accepted
/// descriptor nobody asked for yet), or idle (could not be posted, or the
/// system had no descriptor to give).
struct accept_slot : operation {
    explicit accept_slot(complete_fn fn) noexcept : operation(fn) {}

    accept_pool* pool = nullptr;
    accept_slot* next = nullptr; // in the ready or the idle queue
    int accepted = -1;           // while ready
    sockaddr_storage address{};  // the peer's, written by the kernel
    socklen_t length = 0;
};

/// What the pool sees of a coroutine awaiting accept(), as on Windows: a
/// node of its waiter list and the result it hands over; `handshake`
/// settles who resumes it.
struct accept_waiter : operation {
    explicit accept_waiter(complete_fn fn) noexcept : operation(fn) {}

    list_hook<accept_waiter> hook;
    /// Its place in a list of waiters taken out of the pool to be finished
    /// outside the lock (a second link: see accept_pool::take_waiters).
    accept_waiter* finish_next = nullptr;
    socket_handle socket;
    std::optional<endpoint> remote;
    std::error_code error;
    std::coroutine_handle<> continuation;
    resume_handshake handshake;
    bool deferrable = false;
    deferred_frame deferred;
};

/// The state a tcp_acceptor shares with its accept requests. It lives on
/// the heap, allocated once by listen(), and is freed when the last of its
/// owner, its posted slots, a pending arm step and its live accept_ops lets
/// go (a reference count): the kernel may hold a slot after the acceptor is
/// destroyed.
///
/// Requests are submitted only from the pool's threads: the kernel cancels
/// a thread's requests when that thread exits (docs/design/uring.md), and a
/// listener's accepts must outlive whichever thread called listen() or
/// accept(). Elsewhere the pool posts its `arm_` step and submits from there.
/// An accept cancelled by such an exit (ECANCELED while open) is simply
/// submitted again.
///
/// The slots are spread over the rings of the threads in run(): each slot
/// that is (re)armed goes to the next ring in turn (scheduler::
/// next_ring_in_use), submitted there by that ring's thread (handed over
/// with scheduler::post_to), so connections, which stay on the ring that
/// accepted them, spread over the threads. A thread that comes later gets
/// its share as slots complete and are armed again.
///
/// Everything that submits on the listener or reads the lists or `closed_`
/// holds `mutex_`; close() sets `closed_` under it before it cancels and
/// closes the listener, so nothing is submitted on a descriptor number the
/// system may already have given to another file.
class accept_pool {
public:
    /// Takes `listener` (bound, listening, associated with `sched`) and
    /// posts up to `depth` accepts, from a pool thread. The caller holds the
    /// first reference. Closes itself when `context_stop` is requested.
    accept_pool(scheduler& sched, socket_handle listener, bool /*v6*/, unsigned depth, portico::stop_token context_stop)
        : sched_(sched), listener_(std::move(listener)), depth_(depth == 0 ? 1 : depth),
          slots_(std::make_unique<slot_storage[]>(depth_))
    {
        {
            std::lock_guard lock(mutex_);
            for (unsigned i = 0; i < depth_; ++i) {
                accept_slot& slot = slots_[i].slot;
                slot.pool = this;
                idle_.push_back(slot);
            }
            (void)arm_locked();
        }
        // Last, and outside the lock: its callback may run at once (the
        // context is already stopped) and close what was just posted.
        on_context_stop_.emplace(std::move(context_stop), closer{this});
    }

    accept_pool(const accept_pool&) = delete;
    accept_pool& operator=(const accept_pool&) = delete;

    void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }

    void release() noexcept
    {
        // RACE: acq_rel so the thread that frees sees every other thread's
        // last writes to the pool.
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// The owner lets go: stop watching the context, close, drop its reference.
    void release_owner() noexcept
    {
        // Waits for a running context-stop callback, which touches `this`.
        on_context_stop_.reset();
        close();
        release();
    }

    /// Closes the listener: posted accepts complete (cancelled), ready
    /// connections are closed, every waiter resumes once with
    /// operation_aborted. Idempotent, any thread.
    void close() noexcept
    {
        socket_handle listener;
        slot_queue unclaimed;
        finish_list waiters;
        {
            std::lock_guard lock(mutex_);
            if (closed_) return;
            closed_ = true;
            listener = std::move(listener_);
            unclaimed = std::move(ready_);
            take_waiters(waiters);
        }
        // Outside the lock: nothing is submitted on it once closed_ is set.
        // Its close cancels the posted accepts; each completion sees closed_.
        listener.close();
        unclaimed.drain([](accept_slot& slot) { ::close(std::exchange(slot.accepted, -1)); });
        waiters.drain([this](accept_waiter& w) {
            w.error = make_error_code(errc::operation_aborted);
            finish(w, false);
        });
    }

    /// accept() on a coroutine: takes a ready connection (true: `w` holds
    /// the result, continue inline), or queues `w` (false). An error that
    /// means nothing can be accepted is returned in `w.error` with true.
    bool take_or_wait(accept_waiter& w) noexcept
    {
        std::lock_guard lock(mutex_);
        if (closed_) {
            w.error = make_error_code(errc::operation_aborted);
            return true;
        }
        if (accept_slot* slot = ready_.pop_front()) {
            hand_over(*slot, w);
            (void)arm_locked();
            return true;
        }
        if (posted_ == 0 && !arm_pending_) {
            // Nothing is posted (every accept failed for want of resources):
            // try again now rather than wait for a connection that nothing
            // would accept.
            if (auto error = arm_locked(); error && posted_ == 0 && !arm_pending_) {
                w.error = error;
                return true;
            }
        }
        waiters_.push_back(w);
        return false;
    }

    /// Removes `w` from the waiter list if it is still there; true if it was
    /// (the caller then owns finishing it).
    bool unlink(accept_waiter& w) noexcept
    {
        std::lock_guard lock(mutex_);
        if (!waiters_.contains(w)) return false;
        waiters_.remove(w);
        return true;
    }

    /// Resumes a waiter that was removed from the list: inline with
    /// `resume_inline` (on a pool thread of this context), otherwise posted
    /// to the pool, whose dispatch (accept_awaiter::on_posted) completes it.
    void finish(accept_waiter& w, bool resume_inline) noexcept
    {
        if (!resume_inline) {
            // RACE: idle means await_suspend has not published `running`
            // yet: it sees `done` and continues inline. Otherwise the post
            // resumes it (or frees the frame if it was destroyed meanwhile).
            if (!w.handshake.complete_from(resume_handshake::state::idle)) sched_.post(&w);
            return;
        }
        switch (w.handshake.complete()) {
        case resume_handshake::state::running: w.continuation.resume(); break;
        case resume_handshake::state::orphaned:
            if (w.deferred.arrive()) frame_allocation::release(w.deferred.block, w.deferred.size);
            break;
        default: break; // not suspended yet: await_suspend continues inline
        }
    }

    /// The listener's bound address. Errors: operation_aborted once closed.
    [[nodiscard]] io_result<endpoint> local_endpoint() const noexcept
    {
        std::lock_guard lock(mutex_);
        if (closed_) return {make_error_code(errc::operation_aborted), {}};
        return listener_.local_endpoint();
    }

    /// The listener as an integer; the invalid value once closed.
    [[nodiscard]] std::uintptr_t listener() const noexcept
    {
        std::lock_guard lock(mutex_);
        return listener_.native();
    }

    /// Connections that failed between the handshake and their accept (the
    /// client reset or aborted first); the slot was posted again.
    [[nodiscard]] std::uint64_t failed_accepts() const noexcept
    {
        return failed_accepts_.load(std::memory_order_relaxed);
    }

private:
    using slot_queue = intrusive_queue<accept_slot, &accept_slot::next>;
    using waiter_list = intrusive_list<accept_waiter, &accept_waiter::hook>;
    using finish_list = intrusive_queue<accept_waiter, &accept_waiter::finish_next>;

    struct slot_storage {
        accept_slot slot{&accept_pool::on_slot_complete};
    };

    struct closer {
        accept_pool* pool;
        void operator()() const noexcept { pool->close(); }
    };

    /// The posted step that submits idle slots from a pool thread.
    struct arm_step : operation {
        explicit arm_step(accept_pool* p) noexcept : operation(&arm_step::run), pool(p) {}
        static void run(operation* base, std::uintptr_t, std::uint32_t) noexcept
        {
            static_cast<arm_step*>(base)->pool->on_arm();
        }
        accept_pool* pool;
    };

    ~accept_pool() = default;

    /// Moves every waiter to `out` (mutex_ held), unlinking each.
    // RACE: moving the list whole would leave each waiter's links set, and a
    // canceller on another thread would find it "contained" and unlink it
    // from the emptied list while `out` is being drained.
    void take_waiters(finish_list& out) noexcept
    {
        waiters_.drain([&out](accept_waiter& w) noexcept { out.push_back(w); });
    }

    /// Moves the connection of a ready slot into a waiter.
    void hand_over(accept_slot& slot, accept_waiter& w) noexcept
    {
        w.remote = from_sockaddr(slot.address, slot.length);
        // The waiter's socket_handle owns it from here; associating it with
        // the context (accept_op::await_resume) gives it its shared state.
        w.socket = socket_handle(std::exchange(slot.accepted, -1));
        idle_.push_back(slot);
    }

    /// Arms every idle slot (mutex_ held), here on a pool thread or through
    /// the arm step from anywhere else: each goes to the next ring in turn,
    /// submitted at once if that is this thread's, else handed to that
    /// ring's thread (on_arm_slot), counted as posted meanwhile. Returns the
    /// last refusal (a slot refused stays idle), or nothing.
    std::error_code arm_locked() noexcept
    {
        if (closed_ || idle_.empty()) return {};
        if (!sched_.running_in_this_thread()) {
            if (!arm_pending_) {
                arm_pending_ = true;
                add_ref();
                sched_.post(&arm_);
            }
            return {};
        }
        std::error_code error;
        slot_queue refused;
        const unsigned here = sched_.ring_of_this_thread();
        while (accept_slot* slot = idle_.pop_front()) {
            // Counted when asked for, on whichever ring it is submitted:
            // accept_calls then says at once that a slot went back in.
            sched_.count(counter::accept_calls);
            const unsigned target = sched_.next_ring_in_use(ring_cursor_);
            if (target != here) {
                // Its completion function is the arm step until it runs
                // there (nothing else knows an idle slot).
                slot->complete = &accept_pool::on_arm_slot;
                add_ref();
                ++posted_;
                sched_.work_started();
                sched_.post_to(target, slot);
                continue;
            }
            if (auto e = submit_locked(*slot)) {
                error = e;
                refused.push_back(*slot);
            }
        }
        idle_ = std::move(refused);
        return error;
    }

    /// A slot handed to this ring's thread to be submitted here (arm_locked).
    static void on_arm_slot(operation* op, std::uintptr_t, std::uint32_t) noexcept
    {
        auto& slot = static_cast<accept_slot&>(*op);
        slot.complete = &accept_pool::on_slot_complete;
        accept_pool& self = *slot.pool;
        finish_list failed;
        std::error_code failure;
        {
            std::lock_guard lock(self.mutex_);
            --self.posted_;
            if (self.closed_) {
                self.idle_.push_back(slot);
            } else if ((failure = self.submit_locked(slot))) {
                self.idle_.push_back(slot);
                // Nothing is posted any more: fail the waiters rather than
                // leave them waiting for ever (the next accept() tries again).
                if (self.posted_ == 0 && !self.arm_pending_) self.take_waiters(failed);
            }
        }
        failed.drain([&](accept_waiter& w) {
            w.error = failure;
            self.finish(w, true);
        });
        self.release();
    }

    /// Submits one accept for `slot` (mutex_ held, on a pool thread).
    std::error_code submit_locked(accept_slot& slot) noexcept
    {
        // Counted before the call: the completion may be dispatched on
        // another thread before submit() even returns.
        add_ref();
        ++posted_;
        sched_.work_started();
        const int listener = listener_.get();
        listener_.note_ring(sched_.ring_of_this_thread());
        const std::error_code refused = sched_.submit([&slot, listener](io_uring_sqe& sqe) {
            slot.length = sizeof slot.address;
            sqe.opcode = IORING_OP_ACCEPT;
            sqe.fd = listener;
            sqe.addr = reinterpret_cast<std::uintptr_t>(&slot.address);
            sqe.addr2 = reinterpret_cast<std::uintptr_t>(&slot.length);
            sqe.accept_flags = SOCK_CLOEXEC;
            sqe.user_data = reinterpret_cast<std::uintptr_t>(static_cast<operation*>(&slot));
        });
        if (!refused) return {};
        --posted_;
        sched_.work_finished();
        refs_.fetch_sub(1, std::memory_order_relaxed); // never the last: the caller holds one
        return refused.value() == EBUSY || refused.value() == EAGAIN ? make_error_code(errc::no_resources)
                                                                     : socket_error(refused.value());
    }

    /// The arm step ran (on a pool thread).
    void on_arm() noexcept
    {
        finish_list failed;
        std::error_code failure;
        {
            std::lock_guard lock(mutex_);
            arm_pending_ = false;
            failure = arm_locked();
            // Nothing could be posted: fail the waiters rather than leave
            // them waiting for ever (the next accept() tries again).
            if (failure && posted_ == 0) take_waiters(failed);
        }
        failed.drain([&](accept_waiter& w) {
            w.error = failure;
            finish(w, true);
        });
        release();
    }

    /// Whether an accept's error is the connection's, not the listener's:
    /// that connection is gone, the next one may come (Linux passes the
    /// new connection's pending network errors to accept).
    static bool connection_failed(int error) noexcept
    {
        switch (error) {
        case ECONNABORTED:
        case ECONNRESET:
        case EPROTO:
        case EPERM:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
        case ETIMEDOUT: return true;
        default: return false;
        }
    }

    /// A slot's accept completed (on a pool thread).
    static void on_slot_complete(operation* op, std::uintptr_t status, std::uint32_t result) noexcept
    {
        auto& slot = static_cast<accept_slot&>(*op);
        accept_pool& self = *slot.pool;
        accept_waiter* served = nullptr;
        finish_list failed;
        std::error_code failure;
        {
            std::lock_guard lock(self.mutex_);
            --self.posted_;
            const int error = static_cast<int>(status);
            if (self.closed_) {
                if (error == 0) ::close(static_cast<int>(result));
                self.idle_.push_back(slot);
            } else if (error == 0) {
                slot.accepted = static_cast<int>(result);
                if (accept_waiter* w = self.waiters_.pop_front()) {
                    served = w;
                    self.hand_over(slot, *served);
                    (void)self.arm_locked();
                } else {
                    self.ready_.push_back(slot);
                }
            } else {
                // ECANCELED while open: the thread that submitted it exited;
                // the listener is fine. A connection that failed before its
                // accept is dropped and counted. Either way the slot goes
                // back in. Anything else (no descriptors or memory left)
                // leaves it idle until an accept() retries.
                const bool again = error == ECANCELED || connection_failed(error);
                if (error != ECANCELED && again) self.failed_accepts_.fetch_add(1, std::memory_order_relaxed);
                self.idle_.push_back(slot);
                failure = again ? self.arm_locked() : socket_error(error);
                // Nothing is posted any more: fail the waiters rather than
                // leave them waiting for ever.
                if (failure && self.posted_ == 0 && !self.arm_pending_) self.take_waiters(failed);
            }
        }
        failed.drain([&](accept_waiter& w) {
            w.error = failure;
            self.finish(w, false);
        });
        // Resumed before the release below: the coroutine may destroy the
        // acceptor, and this slot's reference keeps the pool alive meanwhile.
        if (served != nullptr) self.finish(*served, true);
        self.release();
    }

    scheduler& sched_;
    mutable std::mutex mutex_;
    socket_handle listener_;
    const unsigned depth_;
    std::unique_ptr<slot_storage[]> slots_;
    std::atomic<unsigned> refs_{1};
    std::atomic<std::uint64_t> failed_accepts_{0};
    arm_step arm_{this};
    bool closed_ = false;
    bool arm_pending_ = false;
    unsigned posted_ = 0;      // in the kernel, or on their way to a ring's thread
    unsigned ring_cursor_ = 0; // where the next slot goes (next_ring_in_use)
    slot_queue ready_;
    slot_queue idle_;
    waiter_list waiters_;
    std::optional<portico::stop_callback<closer>> on_context_stop_;
};

/// The awaiter base of tcp_acceptor::accept(), as on Windows: queues on the
/// pool, is finished by a completing slot, a close or its stop callback,
/// and keeps its frame alive if destroyed while a posted resumption is on
/// its way. The public accept_op adds await_resume.
class accept_awaiter : private accept_waiter {
public:
    /// `pool` is null when the acceptor is not listening.
    explicit accept_awaiter(accept_pool* pool) noexcept : accept_waiter(&accept_awaiter::on_posted), pool_(pool)
    {
        if (pool_ != nullptr) pool_->add_ref();
    }

    accept_awaiter(const accept_awaiter&) = delete;
    accept_awaiter& operator=(const accept_awaiter&) = delete;
    /// Moves an accept not awaited yet.
    accept_awaiter(accept_awaiter&& other) noexcept : accept_waiter(&accept_awaiter::on_posted), pool_(other.pool_)
    {
        assert(other.handshake.load(std::memory_order_relaxed) == resume_handshake::state::idle && !other.cancel_ &&
               "moving an accept that was already started");
        if (pool_ != nullptr) pool_->add_ref();
    }
    accept_awaiter& operator=(accept_awaiter&&) = delete;

    ~accept_awaiter()
    {
        // Waits for a stop callback running on another thread: it touches us.
        cancel_.reset();
        if (pool_ == nullptr) return;
        // Destroyed while suspended and still queued: nobody will finish it.
        // Destroyed after a finisher took it from the list: a posted
        // resumption may be on its way, so the frame stays until it comes.
        // Register before publishing `orphaned`, which lets it free the frame.
        if (!pool_->unlink(*this) && handshake.load() == resume_handshake::state::running) {
            if (!deferrable || !orphan_registry::for_this_thread().add(this, &deferred)) std::terminate();
            (void)handshake.orphan();
        }
        // A connection handed over but never taken is closed with `socket`.
        pool_->release();
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        continuation = awaiting;
        deferrable = std::is_base_of_v<frame_allocation, Promise>;
        if (pool_ == nullptr) {
            error = make_error_code(errc::bad_state);
            return false;
        }
        portico::stop_token token = stop_token_of(awaiting);
        if (token.stop_requested()) {
            error = make_error_code(errc::operation_aborted);
            return false;
        }
        if (pool_->take_or_wait(*this)) return false;
        // Queued: from here a completing slot on another thread may finish us.
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        // RACE: after this succeeds the finisher may resume the coroutine and
        // destroy this awaiter at once: touch nothing more.
        return handshake.suspend();
    }

protected:
    /// The error, or nothing and then the accepted socket (taken: a second
    /// call finds it closed) and the peer, if known.
    [[nodiscard]] std::error_code result() const noexcept { return error; }
    [[nodiscard]] std::uintptr_t take_socket() noexcept { return static_cast<std::uintptr_t>(socket.release()); }
    [[nodiscard]] const std::optional<endpoint>& peer() const noexcept { return remote; }

private:
    struct canceller {
        accept_awaiter* op;
        void operator()() const noexcept
        {
            // Whoever unlinks the waiter finishes it; if a slot or close()
            // got there first, there is nothing to cancel.
            if (op->pool_->unlink(*op)) {
                op->error = make_error_code(errc::operation_aborted);
                op->pool_->finish(*op, false);
            }
        }
    };

    // A waiter finished from outside a pool thread comes back through the ring.
    static void on_posted(operation* base, std::uintptr_t, std::uint32_t) noexcept
    {
        auto* self = static_cast<accept_awaiter*>(static_cast<accept_waiter*>(base));
        if (self->handshake.complete() == resume_handshake::state::orphaned) {
            if (self->deferred.arrive()) frame_allocation::release(self->deferred.block, self->deferred.size);
            return;
        }
        self->continuation.resume();
    }

    accept_pool* pool_;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
