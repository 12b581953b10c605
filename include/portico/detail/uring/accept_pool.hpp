// portico: the accept requests a tcp_acceptor keeps in the ring on Linux,
// and the coroutines waiting for what they accept — the io_uring
// counterpart of detail/win/accept_pool.hpp, with the same contract.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/accept_awaiter.hpp>
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

#include <linux/io_uring.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

class accept_pool;

/// The one multishot IORING_OP_ACCEPT a listener keeps in a ring: each
/// connection the kernel accepts is a completion of it.
struct accept_shot : multishot_operation {
    explicit accept_shot(complete_fn fn) noexcept : multishot_operation(fn) {}

    accept_pool* pool = nullptr;
};

/// A connection accepted before an accept() asked for it.
struct ready_connection {
    int fd = -1;
    endpoint peer;
};

/// The connections accepted and not yet asked for, oldest first: room for
/// the acceptor's depth, grown (doubling) only when a burst the kernel
/// accepted at once overshoots it, and given back once emptied, so a storm
/// leaves nothing behind.
class ready_queue {
public:
    explicit ready_queue(std::size_t capacity)
        : base_(capacity == 0 ? 1 : capacity), capacity_(base_), items_(std::make_unique<ready_connection[]>(base_))
    {}

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

    /// Appends `c`; false if the queue was full and could not grow.
    bool push(const ready_connection& c) noexcept
    {
        if (size_ == capacity_ && !grow()) return false;
        items_[(head_ + size_) % capacity_] = c;
        ++size_;
        return true;
    }

    /// Removes and returns the oldest; the queue must not be empty.
    ready_connection pop() noexcept
    {
        assert(size_ != 0);
        const ready_connection c = items_[head_];
        head_ = (head_ + 1) % capacity_;
        if (--size_ == 0 && capacity_ != base_) shrink();
        return c;
    }

private:
    bool grow() noexcept
    {
        const std::size_t bigger = capacity_ * 2;
        std::unique_ptr<ready_connection[]> items(new (std::nothrow) ready_connection[bigger]);
        if (items == nullptr) return false;
        for (std::size_t i = 0; i < size_; ++i) items[i] = items_[(head_ + i) % capacity_];
        items_ = std::move(items);
        capacity_ = bigger;
        head_ = 0;
        return true;
    }

    /// Back to the room for the depth (kept grown if that cannot be had).
    void shrink() noexcept
    {
        std::unique_ptr<ready_connection[]> items(new (std::nothrow) ready_connection[base_]);
        if (items == nullptr) return;
        items_ = std::move(items);
        capacity_ = base_;
        head_ = 0;
    }

    const std::size_t base_;
    std::size_t capacity_;
    std::unique_ptr<ready_connection[]> items_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

/// What the pool sees of a coroutine awaiting accept() (accept_awaiter.hpp).
using accept_waiter = basic_accept_waiter<operation, socket_handle>;

/// The state a tcp_acceptor shares with its accept request. It lives on
/// the heap, allocated once by listen(), and is freed when the last of its
/// owner, its posted request, a pending arm step and its live accept_ops
/// lets go (a reference count): the kernel may hold the request after the
/// acceptor is destroyed.
///
/// One multishot accept (IORING_ACCEPT_MULTISHOT) serves the listener,
/// where Windows keeps `depth` AcceptEx calls posted: one request, and a
/// completion per connection. A connection nobody is waiting for joins the
/// ready queue; once `depth` wait there, the request is cancelled, so
/// further connections wait in the kernel's backlog, and accept() arms it
/// again when it takes one. The kernel accepts a burst that is already in
/// the backlog at once, so the queue may overshoot `depth` by at most the
/// backlog. A multishot accept writes every peer's address into the one
/// buffer, so each connection's is asked for (getpeername) as its
/// completion is handled; one the peer has already reset has none and is
/// dropped, as on Windows, and counted in failed_accepts().
///
/// The request is submitted only from a pool thread: the kernel cancels a
/// thread's requests when that thread exits (docs/design/uring.md), and a
/// listener's accept must outlive whichever thread called listen() or
/// accept(). Elsewhere the pool posts its `arm_` step and submits from
/// there. An accept cancelled by such an exit (ECANCELED while open) is
/// simply submitted again.
///
/// Its completions all come to the ring it was submitted on, one after the
/// other. A waiter it serves is resumed on the next ring in use in turn
/// (scheduler::next_ring_in_use, handed over with post_to when that is
/// another thread's), so connections, whose requests go to the ring of the
/// thread their coroutine runs on, spread over the threads.
///
/// Everything that submits on the listener or reads the queues or `closed_`
/// holds `mutex_`; close() sets `closed_` under it before it cancels and
/// closes the listener, so nothing is submitted on a descriptor number the
/// system may already have given to another file.
class accept_pool {
public:
    /// Takes `listener` (bound, listening, associated with `sched`) and
    /// arms its accept, from a pool thread; `depth` connections at most
    /// wait unclaimed before it pauses. The caller holds the first
    /// reference. Closes itself when `context_stop` is requested.
    accept_pool(scheduler& sched, socket_handle listener, bool /*v6*/, unsigned depth, portico::stop_token context_stop)
        : sched_(sched), listener_(std::move(listener)), depth_(depth == 0 ? 1 : depth), ready_(depth_)
    {
        shot_.pool = this;
        {
            std::lock_guard lock(mutex_);
            (void)arm_locked();
        }
        // Last, and outside the lock: its callback may run at once (the
        // context is already stopped) and close what was just armed.
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

    /// Closes the listener: the accept request completes (cancelled), ready
    /// connections are closed, every waiter resumes once with
    /// operation_aborted. Idempotent, any thread.
    void close() noexcept
    {
        socket_handle listener;
        finish_list waiters;
        {
            std::lock_guard lock(mutex_);
            if (closed_) return;
            closed_ = true;
            listener = std::move(listener_);
            while (!ready_.empty()) ::close(ready_.pop().fd);
            take_waiters(waiters);
        }
        // Outside the lock: nothing is submitted on it once closed_ is set.
        // Its close cancels the request; its last completion sees closed_.
        listener.close();
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
        if (!ready_.empty()) {
            hand_over(ready_.pop(), w);
            // Below the depth again: a paused accept resumes.
            (void)arm_locked();
            return true;
        }
        if (!shot_posted_ && !arm_pending_) {
            // Nothing is armed (the last accept failed for want of
            // resources): try again now rather than wait for a connection
            // that nothing would accept.
            if (auto error = arm_locked(); error && !shot_posted_ && !arm_pending_) {
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
    /// client reset or aborted first), dropped while the listener went on.
    [[nodiscard]] std::uint64_t failed_accepts() const noexcept
    {
        return failed_accepts_.load(std::memory_order_relaxed);
    }

    /// Connections accepted and not yet asked for (tests).
    [[nodiscard]] std::size_t ready_count() const noexcept
    {
        std::lock_guard lock(mutex_);
        return ready_.size();
    }

    /// Whether the accept request is in the kernel, or on its way there
    /// (tests: false while paused at the depth).
    [[nodiscard]] bool accepting() const noexcept
    {
        std::lock_guard lock(mutex_);
        return shot_posted_ || arm_pending_;
    }

private:
    using waiter_list = intrusive_list<accept_waiter, &accept_waiter::hook>;
    using finish_list = intrusive_queue<accept_waiter, &accept_waiter::finish_next>;

    struct closer {
        accept_pool* pool;
        void operator()() const noexcept { pool->close(); }
    };

    /// The posted step that arms the accept from a pool thread.
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

    /// Moves an accepted connection into a waiter.
    static void hand_over(const ready_connection& c, accept_waiter& w) noexcept
    {
        w.remote = c.peer;
        // The waiter's socket_handle owns it from here; associating it with
        // the context (accept_op::await_resume) gives it its shared state.
        w.socket = socket_handle(c.fd);
    }

    /// Arms the accept unless it is armed, closed or paused at the depth
    /// (mutex_ held): submitted here on a pool thread, through the arm step
    /// from anywhere else. Returns the ring's refusal, or nothing.
    std::error_code arm_locked() noexcept
    {
        if (closed_ || shot_posted_ || ready_.size() >= depth_) return {};
        if (!sched_.running_in_this_thread()) {
            if (!arm_pending_) {
                arm_pending_ = true;
                add_ref();
                sched_.post(&arm_);
            }
            return {};
        }
        // Counted before the call: the first completion may be dispatched
        // before submit() even returns (on this ring: not before this
        // thread takes it, but the count is the context's).
        add_ref();
        shot_posted_ = true;
        shot_ring_ = sched_.ring_of_this_thread();
        sched_.work_started();
        const int listener = listener_.get();
        listener_.note_ring(shot_ring_);
        accept_shot* shot = &shot_;
        const std::error_code refused = sched_.submit([shot, listener](io_uring_sqe& sqe) {
            sqe.opcode = IORING_OP_ACCEPT;
            sqe.fd = listener;
            sqe.ioprio = IORING_ACCEPT_MULTISHOT;
            sqe.accept_flags = SOCK_CLOEXEC;
            sqe.user_data = user_data_of(shot);
        });
        if (!refused) return {};
        shot_posted_ = false;
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
            // Nothing could be armed: fail the waiters rather than leave
            // them waiting for ever (the next accept() tries again).
            if (failure && !shot_posted_) take_waiters(failed);
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

    /// The peer of a connection the kernel just accepted, or nothing if the
    /// peer has reset it already (the descriptor is then closed).
    static std::optional<endpoint> peer_of(int fd) noexcept
    {
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
            if (auto peer = from_sockaddr(address, length)) return peer;
        }
        ::close(fd);
        return std::nullopt;
    }

    /// A completion of the accept request (on the pool thread of its ring,
    /// one at a time): a connection, or the request's end.
    static void on_shot_complete(operation* op, std::uintptr_t status, std::uint32_t result) noexcept
    {
        auto& shot = static_cast<accept_shot&>(static_cast<multishot_operation&>(*op));
        accept_pool& self = *shot.pool;
        const bool more = shot.more;
        const int error = static_cast<int>(status);
        ready_connection accepted;
        if (error == 0) {
            self.sched_.count(counter::accept_calls);
            const int fd = static_cast<int>(result);
            if (auto peer = peer_of(fd)) {
                accepted = {fd, *peer};
            } else {
                self.failed_accepts_.fetch_add(1, std::memory_order_relaxed);
            }
        }
        accept_waiter* served = nullptr;
        unsigned served_on = 0;
        bool pause = false;
        unsigned shot_ring = 0;
        finish_list failed;
        std::error_code failure;
        {
            std::lock_guard lock(self.mutex_);
            if (!more) self.shot_posted_ = false;
            shot_ring = self.shot_ring_;
            if (self.closed_) {
                if (accepted.fd >= 0) ::close(accepted.fd);
            } else {
                if (accepted.fd >= 0) {
                    if (accept_waiter* w = self.waiters_.pop_front()) {
                        served = w;
                        served_on = self.sched_.next_ring_in_use(self.ring_cursor_);
                        hand_over(accepted, *served);
                    } else if (!self.ready_.push(accepted)) {
                        // No memory to hold it: dropped, as a failed accept.
                        ::close(accepted.fd);
                        self.failed_accepts_.fetch_add(1, std::memory_order_relaxed);
                    }
                    pause = more && self.ready_.size() >= self.depth_;
                }
                // ECANCELED while open: the pause above, or the thread that
                // submitted it exited; the listener is fine. A connection
                // that failed before its accept is dropped and counted.
                // Either way the request is armed again (unless paused).
                // Anything else (no descriptors or memory left) leaves it
                // unarmed until an accept() retries.
                const bool again = error == 0 || error == ECANCELED || connection_failed(error);
                if (error != 0 && error != ECANCELED && again) {
                    self.failed_accepts_.fetch_add(1, std::memory_order_relaxed);
                }
                if (!more) failure = again ? self.arm_locked() : socket_error(error);
                // Nothing is armed any more: fail the waiters rather than
                // leave them waiting for ever.
                if (failure && !self.shot_posted_ && !self.arm_pending_) self.take_waiters(failed);
            }
        }
        // RACE: outside the lock, yet still this request: only its last
        // completion, which this thread has not taken yet, lets it be armed
        // again. Its cancellation comes back as that last completion.
        if (pause) self.sched_.cancel(shot_ring, &shot);
        failed.drain([&](accept_waiter& w) {
            w.error = failure;
            self.finish(w, false);
        });
        // Resumed before the release below: the coroutine may destroy the
        // acceptor, and the request's reference keeps the pool alive meanwhile.
        if (served != nullptr) {
            if (served_on == self.sched_.ring_of_this_thread()) {
                self.finish(*served, true);
            } else if (!served->handshake.complete_from(resume_handshake::state::idle)) {
                // RACE: as finish(): idle means its await_suspend has not
                // suspended yet and continues inline; else it resumes there.
                self.sched_.work_started();
                self.sched_.post_to(served_on, served);
            }
        }
        if (!more) self.release();
    }

    scheduler& sched_;
    mutable std::mutex mutex_;
    socket_handle listener_;
    const unsigned depth_;
    ready_queue ready_;
    accept_shot shot_{&accept_pool::on_shot_complete};
    std::atomic<unsigned> refs_{1};
    std::atomic<std::uint64_t> failed_accepts_{0};
    arm_step arm_{this};
    bool closed_ = false;
    bool arm_pending_ = false;
    bool shot_posted_ = false; // in the kernel, until its last completion is handled
    unsigned shot_ring_ = 0;   // the ring it was submitted on
    unsigned ring_cursor_ = 0; // where the next waiter served resumes (next_ring_in_use)
    waiter_list waiters_;
    std::optional<portico::stop_callback<closer>> on_context_stop_;
};

/// The awaiter base of tcp_acceptor::accept() (accept_awaiter.hpp).
using accept_awaiter = basic_accept_awaiter<accept_pool, accept_waiter>;

} // namespace detail::uring

PORTICO_NAMESPACE_END
