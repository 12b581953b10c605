// portico: the AcceptEx calls a tcp_acceptor keeps posted, and the
// coroutines waiting for what they accept.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/accept_awaiter.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/extensions.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/socket.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <array>
#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

class accept_pool;

/// One AcceptEx call kept posted on the listener, with the socket it
/// accepts into. A slot is posted (the kernel owns it), ready (holds an
/// accepted connection nobody asked for yet), or idle (could not be posted).
struct accept_slot : overlapped_op {
    /// AcceptEx wants room for each address plus 16 bytes.
    static constexpr DWORD address_length = sizeof(SOCKADDR_STORAGE) + 16;

    explicit accept_slot(complete_fn fn) noexcept : overlapped_op(fn) {}

    accept_pool* pool = nullptr;
    socket_handle socket;
    accept_slot* next = nullptr; // in the ready or the idle queue
    std::array<char, 2 * address_length> addresses{};
};

/// What the pool sees of a coroutine awaiting accept() (accept_awaiter.hpp).
using accept_waiter = basic_accept_waiter<overlapped_op, socket_handle>;

/// The state a tcp_acceptor shares with its posted AcceptEx calls. It lives
/// on the heap, allocated once by listen(), and is freed when the last of
/// its owner, its posted slots and its live accept_ops lets go (a reference
/// count): the kernel may hold a slot long after the acceptor is destroyed.
///
/// Everything that touches the listener handle, the lists or `closed_` holds
/// `mutex_`; so a close() on one thread never lets another thread call
/// AcceptEx or setsockopt on a handle value the system may already reuse.
class accept_pool {
public:
    /// Takes `listener` (bound, listening, associated with the port without
    /// skip-on-success, so every AcceptEx completes through a packet) and
    /// posts up to `depth` AcceptEx calls. The caller holds the first
    /// reference. Closes itself when `context_stop` is requested.
    accept_pool(scheduler& sched, socket_handle listener, bool v6, unsigned depth, portico::stop_token context_stop)
        : sched_(sched), listener_(std::move(listener)), v6_(v6), depth_(depth == 0 ? 1 : depth),
          slots_(std::make_unique<slot_storage[]>(depth_))
    {
        {
            std::lock_guard lock(mutex_);
            for (unsigned i = 0; i < depth_; ++i) {
                accept_slot& slot = slots_[i].slot;
                slot.pool = this;
                // A slot that fails to post stays idle; accept() retries it
                // and reports the error if nothing else can accept.
                (void)post_locked(slot);
            }
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

    /// Closes the listener: posted slots complete (aborted) and close their
    /// sockets; ready connections are closed; every waiter resumes once with
    /// operation_aborted. Idempotent, any thread.
    void close() noexcept
    {
        socket_handle listener;
        slot_queue unclaimed;
        slot_queue idle;
        finish_list waiters;
        {
            std::lock_guard lock(mutex_);
            if (closed_) return;
            closed_ = true;
            listener = std::move(listener_);
            unclaimed = std::move(ready_);
            idle = std::move(idle_);
            take_waiters(waiters);
        }
        // Outside the lock: nobody uses the handle once closed_ is set.
        listener.close();
        // Ready slots hold a connection; idle ones may hold a socket made
        // before their AcceptEx failed.
        unclaimed.drain([](accept_slot& slot) { slot.socket.close(); });
        idle.drain([](accept_slot& slot) { slot.socket.close(); });
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
            (void)post_locked(*slot);
            return true;
        }
        if (posted_ == 0) {
            // Every slot failed to post: retry now rather than wait for a
            // connection that no AcceptEx can complete.
            std::error_code error;
            idle_.drain([&](accept_slot& slot) {
                if (auto e = post_locked(slot)) error = e;
            });
            if (posted_ == 0) {
                w.error = error ? error : make_error_code(errc::no_resources);
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
    /// `resume_inline` (on a pool thread of this context), otherwise through
    /// the port, whose dispatch (accept_awaiter::on_posted) completes it.
    void finish(accept_waiter& w, bool resume_inline) noexcept
    {
        if (!resume_inline) {
            // RACE: idle means await_suspend has not published `running`
            // yet: it sees `done` and continues inline. Otherwise the packet
            // resumes it (or frees the frame if it was destroyed meanwhile).
            if (!w.handshake.complete_from(resume_handshake::state::idle)) sched_.post(&w);
            return;
        }
        switch (w.handshake.complete()) {
        case resume_handshake::state::running: w.continuation.resume(); break;
        case resume_handshake::state::orphaned:
            // Destroyed while waiting: free the frame if its operator delete
            // already ran.
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

    /// Connections that failed between the handshake and AcceptEx's
    /// completion (reset by the client, mostly); the slot was re-posted.
    [[nodiscard]] std::uint64_t failed_accepts() const noexcept
    {
        return failed_accepts_.load(std::memory_order_relaxed);
    }

private:
    using slot_queue = intrusive_queue<accept_slot, &accept_slot::next>;
    using waiter_list = intrusive_list<accept_waiter, &accept_waiter::hook>;
    using finish_list = intrusive_queue<accept_waiter, &accept_waiter::finish_next>;

    /// Moves every waiter to `out` (mutex_ held), unlinking each.
    // RACE: moving the list whole would leave each waiter's links set, and a
    // canceller on another thread would find it "contained" and unlink it
    // from the emptied list while `out` is being drained here.
    void take_waiters(finish_list& out) noexcept
    {
        waiters_.drain([&out](accept_waiter& w) noexcept { out.push_back(w); });
    }

    struct slot_storage {
        accept_slot slot{&accept_pool::on_slot_complete};
    };

    struct closer {
        accept_pool* pool;
        void operator()() const noexcept { pool->close(); }
    };

    ~accept_pool() = default;

    /// Moves the connection of a completed slot into a waiter.
    void hand_over(accept_slot& slot, accept_waiter& w) noexcept
    {
        w.socket = std::move(slot.socket);
        SOCKADDR* local = nullptr;
        SOCKADDR* remote = nullptr;
        int local_length = 0;
        int remote_length = 0;
        extensions().get_accept_ex_sockaddrs(slot.addresses.data(), 0, accept_slot::address_length,
                                             accept_slot::address_length, &local, &local_length, &remote,
                                             &remote_length);
        w.remote = from_sockaddr(remote, remote_length);
    }

    /// Posts AcceptEx for `slot` (mutex_ held). On failure the slot goes to
    /// the idle queue and the error is returned.
    std::error_code post_locked(accept_slot& slot) noexcept
    {
        // A client may reset between the handshake and the call: that
        // connection is gone, the listener is fine, try again (bounded, so
        // a flood cannot keep this thread here).
        std::error_code error;
        for (int attempt = 0; attempt < 4; ++attempt) {
            if (!slot.socket.is_open()) {
                if ((error = slot.socket.open(v6_, socket_kind::stream))) break;
            }
            slot.reset_overlapped();
            // Counted before the call: the completion may be dispatched on
            // another thread before AcceptEx even returns.
            add_ref();
            ++posted_;
            sched_.work_started();
            sched_.count(counter::accept_calls);
            DWORD bytes = 0;
            if (extensions().accept_ex(listener_.get(), slot.socket.get(), slot.addresses.data(), 0,
                                       accept_slot::address_length, accept_slot::address_length, &bytes, &slot) ||
                ::WSAGetLastError() == WSA_IO_PENDING) {
                // The listener never skips the port: a packet comes either way.
                return {};
            }
            const auto code = static_cast<DWORD>(::WSAGetLastError());
            --posted_;
            sched_.work_finished();
            refs_.fetch_sub(1, std::memory_order_relaxed); // never the last: the caller holds one
            if (code != WSAECONNRESET) {
                idle_.push_front(slot);
                return socket_error(code);
            }
            failed_accepts_.fetch_add(1, std::memory_order_relaxed);
            slot.socket.close();
            error = socket_error(code);
        }
        idle_.push_front(slot);
        return error ? error : make_error_code(errc::no_resources);
    }

    /// A slot's AcceptEx completed (on a pool thread).
    static void on_slot_complete(overlapped_op* op, std::uintptr_t status, std::uint32_t) noexcept
    {
        auto& slot = static_cast<accept_slot&>(*op);
        accept_pool& self = *slot.pool;
        accept_waiter* served = nullptr;
        finish_list failed;
        std::error_code failure;
        {
            std::lock_guard lock(self.mutex_);
            --self.posted_;
            if (self.closed_) {
                slot.socket.close();
            } else {
                bool accepted = status == 0;
                // Without this the accepted socket has no local/peer name and
                // shutdown() fails on it.
                const SOCKET listener = self.listener_.get();
                if (accepted && ::setsockopt(slot.socket.get(), SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                                             reinterpret_cast<const char*>(&listener), sizeof listener) != 0) {
                    accepted = false;
                }
                if (!accepted) {
                    // Reset before it was accepted, or unusable: drop it,
                    // keep the listener, and accept the next one.
                    self.failed_accepts_.fetch_add(1, std::memory_order_relaxed);
                    slot.socket.close();
                    failure = self.post_locked(slot);
                    // Nothing is posted any more: fail the waiters rather
                    // than leave them waiting for ever.
                    if (failure && self.posted_ == 0) self.take_waiters(failed);
                } else if (accept_waiter* w = self.waiters_.pop_front()) {
                    served = w;
                    self.hand_over(slot, *served);
                    (void)self.post_locked(slot);
                } else {
                    self.ready_.push_back(slot);
                }
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
    const bool v6_;
    const unsigned depth_;
    std::unique_ptr<slot_storage[]> slots_;
    std::atomic<unsigned> refs_{1};
    std::atomic<std::uint64_t> failed_accepts_{0};
    bool closed_ = false;
    unsigned posted_ = 0;
    slot_queue ready_;
    slot_queue idle_;
    waiter_list waiters_;
    std::optional<portico::stop_callback<closer>> on_context_stop_;
};

/// The awaiter base of tcp_acceptor::accept() (accept_awaiter.hpp).
using accept_awaiter = basic_accept_awaiter<accept_pool, accept_waiter>;

} // namespace detail::win

PORTICO_NAMESPACE_END
