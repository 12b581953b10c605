// portico: the AcceptEx calls a tcp_acceptor keeps posted, and the
// coroutines waiting for what they accept.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/frame_tracking.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/extensions.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <array>
#include <atomic>
#include <coroutine>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>

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
    SOCKET socket = INVALID_SOCKET;
    accept_slot* next = nullptr; // in the ready or the idle list
    std::array<char, 2 * address_length> addresses{};
};

/// What the pool sees of a coroutine awaiting accept(): a node of its
/// waiter list and the result it hands over.
struct accept_waiter : overlapped_op {
    /// idle -> running       the coroutine suspended; whoever finishes it resumes it
    /// idle -> done          finished before await_suspend returned: it continues inline
    /// running/done -> orphaned  the frame was destroyed while suspended; the
    ///                       finisher (or its posted packet) frees the frame
    enum class state : unsigned char { idle, running, done, orphaned };

    explicit accept_waiter(complete_fn fn) noexcept : overlapped_op(fn) {}

    accept_waiter* prev = nullptr;
    accept_waiter* next = nullptr;
    bool linked = false;
    SOCKET socket = INVALID_SOCKET;
    std::optional<endpoint> remote;
    std::error_code error;
    std::coroutine_handle<> continuation;
    std::atomic<state> progress{state::idle};
    /// Whether the awaiting frame comes from frame_allocation (so it can be
    /// kept alive past its destruction), and where it is then kept.
    bool deferrable = false;
    deferred_frame deferred;
};

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
    /// Takes ownership of `listener` (bound, listening, associated with the
    /// port without skip-on-success, so every AcceptEx completes through a
    /// packet) and posts up to `depth` AcceptEx calls. The caller holds the
    /// first reference. Closes itself when `context_stop` is requested.
    accept_pool(scheduler& sched, SOCKET listener, int family, unsigned depth, portico::stop_token context_stop)
        : sched_(sched), listener_(listener), family_(family), depth_(depth == 0 ? 1 : depth),
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
        SOCKET listener = INVALID_SOCKET;
        accept_slot* unclaimed = nullptr;
        accept_slot* idle = nullptr;
        accept_waiter* waiters = nullptr;
        {
            std::lock_guard lock(mutex_);
            if (closed_) return;
            closed_ = true;
            listener = std::exchange(listener_, INVALID_SOCKET);
            unclaimed = std::exchange(ready_head_, nullptr);
            ready_tail_ = nullptr;
            idle = std::exchange(idle_, nullptr);
            waiters = std::exchange(waiters_head_, nullptr);
            waiters_tail_ = nullptr;
            for (auto* w = waiters; w != nullptr; w = w->next) w->linked = false;
        }
        // Outside the lock: nobody uses the handle once closed_ is set.
        ::closesocket(listener);
        // Ready slots hold a connection; idle ones may hold a socket made
        // before their AcceptEx failed.
        for (accept_slot* list : {unclaimed, idle}) {
            for (; list != nullptr; list = list->next) {
                if (list->socket != INVALID_SOCKET) ::closesocket(std::exchange(list->socket, INVALID_SOCKET));
            }
        }
        while (waiters != nullptr) {
            accept_waiter* w = std::exchange(waiters, waiters->next);
            w->error = make_error_code(errc::operation_aborted);
            finish(*w, false);
        }
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
        if (ready_head_ != nullptr) {
            accept_slot* slot = ready_head_;
            ready_head_ = slot->next;
            if (ready_head_ == nullptr) ready_tail_ = nullptr;
            hand_over(*slot, w);
            (void)post_locked(*slot);
            return true;
        }
        if (posted_ == 0) {
            // Every slot failed to post: retry now rather than wait for a
            // connection that no AcceptEx can complete.
            std::error_code error;
            while (idle_ != nullptr) {
                accept_slot* slot = std::exchange(idle_, idle_->next);
                if (auto e = post_locked(*slot)) error = e;
            }
            if (posted_ == 0) {
                w.error = error ? error : make_error_code(errc::no_resources);
                return true;
            }
        }
        w.linked = true;
        w.next = nullptr;
        w.prev = waiters_tail_;
        if (waiters_tail_ != nullptr) {
            waiters_tail_->next = &w;
        } else {
            waiters_head_ = &w;
        }
        waiters_tail_ = &w;
        return false;
    }

    /// Removes `w` from the waiter list if it is still there; true if it was
    /// (the caller then owns finishing it).
    bool unlink(accept_waiter& w) noexcept
    {
        std::lock_guard lock(mutex_);
        if (!w.linked) return false;
        unlink_locked(w);
        return true;
    }

    /// Resumes a waiter that was removed from the list. `resume_inline` on a
    /// pool thread of this context; otherwise through the port.
    void finish(accept_waiter& w, bool resume_inline) noexcept
    {
        // RACE: if await_suspend has not published `running` yet, it sees
        // `done` and continues inline; otherwise this thread resumes.
        const auto before = w.progress.exchange(accept_waiter::state::done, std::memory_order_acq_rel);
        if (before == accept_waiter::state::running) {
            if (resume_inline) {
                w.continuation.resume();
            } else {
                sched_.post(&w);
            }
        } else if (before == accept_waiter::state::orphaned) {
            // The frame was destroyed while waiting: nothing to resume; free
            // the frame if its operator delete already ran.
            if (w.deferred.arrive()) frame_allocation::release(w.deferred.block, w.deferred.size);
        }
    }

    /// The listener's bound address. Errors: operation_aborted once closed.
    [[nodiscard]] std::error_code local_endpoint(endpoint& out) const noexcept
    {
        std::lock_guard lock(mutex_);
        if (closed_) return make_error_code(errc::operation_aborted);
        SOCKADDR_STORAGE storage{};
        int length = sizeof storage;
        if (::getsockname(listener_, reinterpret_cast<SOCKADDR*>(&storage), &length) != 0) {
            return last_socket_error();
        }
        auto e = from_sockaddr(reinterpret_cast<const SOCKADDR*>(&storage), length);
        if (!e) return make_error_code(errc::invalid_argument);
        out = *e;
        return {};
    }

    [[nodiscard]] SOCKET listener() const noexcept
    {
        std::lock_guard lock(mutex_);
        return listener_;
    }

    /// Connections that failed between the handshake and AcceptEx's
    /// completion (reset by the client, mostly); the slot was re-posted.
    [[nodiscard]] std::uint64_t failed_accepts() const noexcept
    {
        return failed_accepts_.load(std::memory_order_relaxed);
    }

private:
    struct slot_storage {
        accept_slot slot{&accept_pool::on_slot_complete};
    };

    struct closer {
        accept_pool* pool;
        void operator()() const noexcept { pool->close(); }
    };

    ~accept_pool() = default;

    void unlink_locked(accept_waiter& w) noexcept
    {
        if (w.prev != nullptr) {
            w.prev->next = w.next;
        } else {
            waiters_head_ = w.next;
        }
        if (w.next != nullptr) {
            w.next->prev = w.prev;
        } else {
            waiters_tail_ = w.prev;
        }
        w.linked = false;
        w.next = w.prev = nullptr;
    }

    /// Moves the connection of a completed slot into a waiter.
    void hand_over(accept_slot& slot, accept_waiter& w) noexcept
    {
        w.socket = std::exchange(slot.socket, INVALID_SOCKET);
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
    /// the idle list and the error is returned.
    std::error_code post_locked(accept_slot& slot) noexcept
    {
        // A client may reset between the handshake and the call: that
        // connection is gone, the listener is fine, try again (bounded, so
        // a flood cannot keep this thread here).
        for (int attempt = 0; attempt < 4; ++attempt) {
            if (slot.socket == INVALID_SOCKET) {
                slot.socket = ::WSASocketW(family_, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
                if (slot.socket == INVALID_SOCKET) break;
            }
            slot.reset_overlapped();
            // Counted before the call: the completion may be dispatched on
            // another thread before AcceptEx even returns.
            add_ref();
            ++posted_;
            sched_.work_started();
            sched_.count(counter::accept_calls);
            DWORD bytes = 0;
            if (extensions().accept_ex(listener_, slot.socket, slot.addresses.data(), 0, accept_slot::address_length,
                                       accept_slot::address_length, &bytes, &slot) ||
                ::WSAGetLastError() == WSA_IO_PENDING) {
                // The listener never skips the port: a packet comes either way.
                return {};
            }
            const auto error = static_cast<DWORD>(::WSAGetLastError());
            --posted_;
            sched_.work_finished();
            refs_.fetch_sub(1, std::memory_order_relaxed); // never the last: the caller holds one
            if (error != WSAECONNRESET) {
                push_idle(slot);
                return socket_error(error);
            }
            failed_accepts_.fetch_add(1, std::memory_order_relaxed);
            ::closesocket(std::exchange(slot.socket, INVALID_SOCKET));
        }
        auto error = last_socket_error();
        push_idle(slot);
        return error ? error : make_error_code(errc::no_resources);
    }

    void push_idle(accept_slot& slot) noexcept
    {
        slot.next = idle_;
        idle_ = &slot;
    }

    /// A slot's AcceptEx completed (on a pool thread).
    static void on_slot_complete(overlapped_op* op, ULONG_PTR status, DWORD) noexcept
    {
        auto& slot = static_cast<accept_slot&>(*op);
        accept_pool& self = *slot.pool;
        accept_waiter* served = nullptr;
        accept_waiter* failed = nullptr;
        std::error_code failure;
        {
            std::lock_guard lock(self.mutex_);
            --self.posted_;
            if (self.closed_) {
                ::closesocket(std::exchange(slot.socket, INVALID_SOCKET));
            } else {
                bool accepted = status == 0;
                // Without this the accepted socket has no local/peer name and
                // shutdown() fails on it.
                if (accepted &&
                    ::setsockopt(slot.socket, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                                 reinterpret_cast<const char*>(&self.listener_), sizeof self.listener_) != 0) {
                    accepted = false;
                }
                if (!accepted) {
                    // Reset before it was accepted, or unusable: drop it,
                    // keep the listener, and accept the next one.
                    self.failed_accepts_.fetch_add(1, std::memory_order_relaxed);
                    ::closesocket(std::exchange(slot.socket, INVALID_SOCKET));
                    failure = self.post_locked(slot);
                    if (failure && self.posted_ == 0) {
                        // Nothing is posted any more: fail the waiters rather
                        // than leave them waiting for ever.
                        failed = std::exchange(self.waiters_head_, nullptr);
                        self.waiters_tail_ = nullptr;
                        for (auto* w = failed; w != nullptr; w = w->next) w->linked = false;
                    }
                } else if (self.waiters_head_ != nullptr) {
                    served = self.waiters_head_;
                    self.unlink_locked(*served);
                    self.hand_over(slot, *served);
                    (void)self.post_locked(slot);
                } else {
                    slot.next = nullptr;
                    if (self.ready_tail_ != nullptr) {
                        self.ready_tail_->next = &slot;
                    } else {
                        self.ready_head_ = &slot;
                    }
                    self.ready_tail_ = &slot;
                }
            }
        }
        while (failed != nullptr) {
            accept_waiter* w = std::exchange(failed, failed->next);
            w->error = failure;
            self.finish(*w, false);
        }
        // Resumed before the release below: the coroutine may destroy the
        // acceptor, and this slot's reference keeps the pool alive meanwhile.
        if (served != nullptr) self.finish(*served, true);
        self.release();
    }

    scheduler& sched_;
    mutable std::mutex mutex_;
    SOCKET listener_;
    const int family_;
    const unsigned depth_;
    std::unique_ptr<slot_storage[]> slots_;
    std::atomic<unsigned> refs_{1};
    std::atomic<std::uint64_t> failed_accepts_{0};
    bool closed_ = false;
    unsigned posted_ = 0;
    accept_slot* ready_head_ = nullptr;
    accept_slot* ready_tail_ = nullptr;
    accept_slot* idle_ = nullptr;
    accept_waiter* waiters_head_ = nullptr;
    accept_waiter* waiters_tail_ = nullptr;
    std::optional<portico::stop_callback<closer>> on_context_stop_;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
