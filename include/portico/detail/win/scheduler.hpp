// portico: the IOCP scheduler behind io_context.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/stat_blocks.hpp>
#include <portico/detail/work_count.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/timer_service.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/io_statistics.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <system_error>
#include <vector>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// Starts Winsock once per process, on first use (the first io_context), not
/// from a static initialiser in every translation unit. Never cleaned up:
/// WSACleanup at exit would race with sockets other code still holds.
inline void ensure_winsock()
{
    static const int started = [] {
        WSADATA data;
        const int error = ::WSAStartup(MAKEWORD(2, 2), &data);
        if (error != 0) throw std::system_error(error, std::system_category(), "WSAStartup");
        return 0;
    }();
    (void)started;
}

/// True if every installed TCP/IP provider returns IFS handles: only then is
/// skipping the completion packet of an immediate success safe (a layered
/// provider without them may still queue one). Checked once per process.
inline bool providers_have_ifs_handles()
{
    static const bool all_ifs = [] {
        DWORD size = 0;
        if (::WSAEnumProtocolsW(nullptr, nullptr, &size) != SOCKET_ERROR || ::WSAGetLastError() != WSAENOBUFS) {
            return false;
        }
        std::unique_ptr<char[]> storage(new char[size]);
        auto* protocols = reinterpret_cast<WSAPROTOCOL_INFOW*>(storage.get());
        const int count = ::WSAEnumProtocolsW(nullptr, protocols, &size);
        if (count == SOCKET_ERROR) return false;
        for (int i = 0; i < count; ++i) {
            const auto& p = protocols[i];
            const bool ip = p.iAddressFamily == AF_INET || p.iAddressFamily == AF_INET6;
            if (ip && (p.dwServiceFlags1 & XP1_IFS_HANDLES) == 0) return false;
        }
        return true;
    }();
    return all_ifs;
}

class scheduler;

/// Operations linked through overlapped_op::next_posted: the fallback queue
/// of refused posts and each pool thread's ready queue.
using op_queue = intrusive_queue<overlapped_op, &overlapped_op::next_posted>;

/// What a thread inside scheduler::run() knows about itself. Only that
/// thread touches it.
struct thread_state {
    scheduler* owner;
    stat_block* stats;
    thread_state* outer; // the run() this one is nested in, if any
    // Immediate successes resumed inline by the chain now running (the
    // completion, ready operation or deferred coroutine this thread resumed
    // last): the turn's budget (scheduler::immediate_success).
    unsigned turn_streak = 0;
    // Operations that succeeded at once past their turn's budget: they run,
    // in order, in the next pass.
    op_queue ready{};
    // The pass being served: the operations that were ready when it began.
    // They run once the port has given the packets that waited before them
    // (every dequeue until one returns less than a full batch).
    op_queue pass{};
    // Packets dispatched since the pass began.
    std::uint64_t pass_packets = 0;
    // Ready operations left to serve without looking at the port, which was
    // empty at the last look (scheduler::options::port_check_interval).
    unsigned quiet_turns = 0;
    // Coroutines to resume once the completion being handled returns
    // (scheduler::defer).
    std::vector<std::coroutine_handle<>> deferred{};
};

inline thread_local thread_state* current_thread_state = nullptr;

/// One completion port served by every thread that calls run().
///
/// Work accounting: every operation that will produce a completion counts
/// as outstanding from before it can complete until after its completion has
/// been dispatched. After stop(), run() returns once that count is zero.
class scheduler {
public:
    struct options {
        /// Threads the port lets run at once; 0 means one per processor.
        unsigned concurrency_hint = 0;
        /// Completion packets one GetQueuedCompletionStatusEx call may return.
        unsigned batch_size = 64;
        /// Resume inline when a socket call succeeds at once (where safe).
        bool skip_completion_on_success = true;
        /// Immediate successes one chain resumes inline in its turn.
        unsigned inline_budget = 1;
        /// Ready turns between two looks at a port found empty (>= 1).
        unsigned port_check_interval = 16;
        /// How long an idle thread looks at the port without waiting before
        /// it blocks (io_context::options::idle_spin).
        std::chrono::microseconds idle_spin{0};
    };

    explicit scheduler(options opts)
        : port_(create_port(opts.concurrency_hint)), batch_size_((std::max)(1u, opts.batch_size)),
          skip_completion_on_success_(opts.skip_completion_on_success), inline_budget_(opts.inline_budget),
          port_check_interval_((std::max)(1u, opts.port_check_interval)),
          idle_spin_(std::clamp(opts.idle_spin, std::chrono::microseconds::zero(), max_idle_spin)),
          timers_(&scheduler::post_from_timer, &scheduler::retry_fallback, this)
    {}

    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;

    [[nodiscard]] HANDLE port() const noexcept { return port_.get(); }
    [[nodiscard]] bool skip_completion_on_success() const noexcept { return skip_completion_on_success_; }
    [[nodiscard]] timer_service& timers() noexcept { return timers_; }

    /// Associates a handle (socket, file) with the port: its overlapped I/O
    /// completes here with completion_key::io. Errors: the system's (the
    /// handle is already associated with another port, or no resources).
    [[nodiscard]] std::error_code associate(HANDLE handle) noexcept
    {
        if (::CreateIoCompletionPort(handle, port(), static_cast<ULONG_PTR>(completion_key::io), 0) == nullptr) {
            return {static_cast<int>(::GetLastError()), std::system_category()};
        }
        return {};
    }

    /// Associates a socket with the port and, if `skip_on_success` and every
    /// installed TCP/IP provider hands out IFS handles, sets
    /// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS so a call that succeeds at once
    /// queues no packet; `skips` says whether that is on for the socket.
    /// Errors: as associate().
    [[nodiscard]] std::error_code associate_socket(SOCKET s, bool skip_on_success, bool& skips) noexcept
    {
        skips = false;
        if (auto ec = associate(reinterpret_cast<HANDLE>(s))) return ec;
        if (skip_on_success && providers_have_ifs_handles()) {
            skips = ::SetFileCompletionNotificationModes(reinterpret_cast<HANDLE>(s),
                                                         FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                             FILE_SKIP_SET_EVENT_ON_HANDLE) != FALSE;
        }
        return {};
    }

    /// Dequeues and dispatches completions on the calling thread until stop()
    /// has been called and no work is outstanding.
    void run()
    {
        // NOTE: every allocation this thread needs comes before it takes its
        // block: io_statistics::running_threads counts a thread from there.
        auto entries = std::make_unique<OVERLAPPED_ENTRY[]>(batch_size_);
        thread_state self{this, nullptr, current_thread_state};
        // Room for the usual handful, so deferring does not allocate.
        self.deferred.reserve(16);
        stat_block* stats = stats_.take();
        self.stats = stats;
        current_thread_state = &self;
        struct restore {
            thread_state& self;
            ~restore()
            {
                current_thread_state = self.outer;
                self.owner->stats_.give_back(*self.stats);
            }
        } restore_on_exit{self};

        for (;;) {
            // RACE: pairs with work_finished() and stop() (work_count.hpp).
            if (work_.drained()) break;
            if (fallback_size_.load(std::memory_order_acquire) != 0) drain_fallback();

            ULONG count = 0;
            const bool have_ready = !self.ready.empty() || !self.pass.empty();
            if (!have_ready || self.quiet_turns == 0) {
                // NOTE: with operations ready, only look at the port: nothing
                // may wait for new packets while they could run.
                const DWORD error =
                    have_ready ? dequeue(entries.get(), count, 0, *stats) : dequeue_idle(entries.get(), count, *stats);
                if (error != 0) {
                    // WAIT_TIMEOUT only comes with a zero wait or from a
                    // spin that ended early: the port is empty, serve what
                    // is ready and look again. A closed port can
                    // only mean a bug, and spinning on it would hide the bug.
                    if (error == ERROR_ABANDONED_WAIT_0) break;
                    count = 0;
                    if (error != WAIT_TIMEOUT) continue;
                }
                // Found empty, the port is looked at again only after
                // port_check_interval ready turns: a lone busy connection
                // would otherwise pay a dequeue call per turn for nobody.
                self.quiet_turns = count == 0 ? port_check_interval_ : 0;
            }
            stat_blocks::bump(*stats, counter::completions, count);
            stat_blocks::note_batch(*stats, count);
            // NOTE: what became ready before this dequeue runs after the
            // packets it returned, which were waiting already; what becomes
            // ready from here on waits for the next pass. So a connection
            // whose data is always ready takes one turn per pass, behind the
            // others (docs/design/operations.md).
            if (self.pass.empty()) {
                self.pass = std::move(self.ready);
                self.pass_packets = 0;
            }
            for (ULONG i = 0; i < count; ++i) {
                self.turn_streak = 0;
                dispatch(entries[i]);
                run_deferred(self);
            }
            self.pass_packets += count;
            // NOTE: a full batch means more packets may wait in the port, and
            // they waited before this pass's operations became ready: take
            // them first. Bounded, so that a port never empty cannot hold
            // the pass back for ever.
            if (count == batch_size_ && !self.pass.empty() && self.pass_packets < 16 * batch_size_) continue;
            serve_ready(self, self.pass);
        }
        // Let the next thread see the drained state too.
        wake_one();
    }

    /// An operation of this scheduler's succeeded at once and will get no
    /// completion packet. Returns true, counting an inline completion, if
    /// the caller may resume its coroutine inline: the chain running on this
    /// thread has not used up its turn's inline_budget. Otherwise the
    /// caller hands the op to queue_ready().
    [[nodiscard]] bool take_inline_turn() noexcept
    {
        thread_state* self = state_of_this_thread();
        unsigned& streak = self != nullptr ? self->turn_streak : off_pool_streak();
        if (++streak > inline_budget_) return false;
        count(counter::inline_completions);
        return true;
    }

    /// Completes `op`, which succeeded at once past its turn (its byte count
    /// in InternalHigh, its work still counted), once and later: on a pool
    /// thread of this scheduler from the thread's ready queue, after the
    /// completions the thread already dequeued (no system call); on any
    /// other thread through the port. The caller must have published its
    /// handshake first and touch nothing afterwards.
    void queue_ready(overlapped_op* op) noexcept
    {
        thread_state* self = state_of_this_thread();
        if (self == nullptr) {
            // Off the pool a streak has no turn to end it: the post does.
            off_pool_streak() = 0;
            post_started(op);
            return;
        }
        count(counter::ready_queued);
        self->ready.push_back(*op);
    }

    /// Queues `h` to be resumed on the calling thread once the completion it
    /// is handling returns, before the thread takes another from the port.
    /// Returns false, doing nothing, if the calling thread is not inside
    /// this scheduler's run() (or, past the reserved room, out of memory).
    bool defer(std::coroutine_handle<> h) noexcept
    {
        for (thread_state* t = current_thread_state; t != nullptr; t = t->outer) {
            if (t->owner != this) continue;
            try {
                t->deferred.push_back(h);
            } catch (const std::bad_alloc&) {
                return false;
            }
            return true;
        }
        return false;
    }

    /// Lets run() return once the outstanding count reaches zero. Timers
    /// keep running: what must end is cancelled through stop tokens (see
    /// docs/design/shutdown.md). Idempotent.
    void stop() noexcept
    {
        // The wake is unconditional (work_count::stop says why).
        work_.stop();
        wake_one();
    }

    [[nodiscard]] bool stopped() const noexcept { return work_.stopped(); }

    [[nodiscard]] bool running_in_this_thread() const noexcept
    {
        for (auto* t = current_thread_state; t != nullptr; t = t->outer) {
            if (t->owner == this) return true;
        }
        return false;
    }

    [[nodiscard]] std::int64_t outstanding() const noexcept { return work_.outstanding(); }

    /// Counts an operation that will produce a completion. Call before the
    /// completion can possibly be dispatched.
    void work_started() noexcept { work_.started(); }

    /// The other half of work_started(), after the completion was handled.
    void work_finished() noexcept
    {
        if (work_.finished()) wake_one();
    }

    /// Posts `op` as new work: it is completed, once, on a pool thread.
    void post(overlapped_op* op) noexcept
    {
        work_started();
        post_started(op);
    }

    /// Posts `op` whose work was already counted by work_started(). If the
    /// port refuses the packet (out of non-paged pool), the op goes to a
    /// fallback queue that pool threads and the timer thread drain, so the
    /// work is delayed, never lost.
    void post_started(overlapped_op* op) noexcept
    {
        count(counter::posts);
        if (inject_failures_.load(std::memory_order_relaxed) == 0 || !take_injected_failure()) {
            // InternalHigh carries the byte count of an operation that
            // completed at once and is re-routed through the port (0 for
            // everything else), so dispatch sees the same as for an I/O packet.
            if (::PostQueuedCompletionStatus(port(), static_cast<DWORD>(op->InternalHigh),
                                             static_cast<ULONG_PTR>(completion_key::posted), op)) {
                return;
            }
        }
        count(counter::post_failures);
        {
            std::lock_guard lock(fallback_mutex_);
            fallback_.push_back(*op);
            fallback_size_.fetch_add(1, std::memory_order_release);
        }
        // Pool threads check the queue after every dequeue, but all of them
        // may be blocked with nothing else to dequeue: the timer thread
        // retries until the port takes the packets.
        timers_.request_retry();
    }

    /// Adds n to counter c: to this thread's own block on a pool thread,
    /// to the shared block (atomically) anywhere else.
    void count(counter c, std::uint64_t n = 1) noexcept
    {
        auto* t = current_thread_state;
        if (t != nullptr && t->owner == this) {
            stat_blocks::bump(*t->stats, c, n);
        } else {
            stats_.add_shared(c, n);
        }
    }

    [[nodiscard]] io_statistics statistics() const { return stats_.sum(outstanding()); }

    /// Makes the next n posts fail as if the port had refused them.
    void inject_post_failures(unsigned n) noexcept { inject_failures_.store(n, std::memory_order_relaxed); }

private:
    /// Owns the port handle; declared first so it is closed last, after the
    /// timer thread that posts to it has been joined.
    class unique_port {
    public:
        explicit unique_port(HANDLE h) noexcept : h_(h) {}
        unique_port(const unique_port&) = delete;
        unique_port& operator=(const unique_port&) = delete;
        ~unique_port() { ::CloseHandle(h_); }
        [[nodiscard]] HANDLE get() const noexcept { return h_; }

    private:
        HANDLE h_;
    };

    /// One GetQueuedCompletionStatusEx call: up to batch_size_ packets into
    /// `entries`, their number into `count`. Returns 0 or the call's error
    /// (WAIT_TIMEOUT: none came within `wait` milliseconds).
    DWORD dequeue(OVERLAPPED_ENTRY* entries, ULONG& count, DWORD wait, stat_block& stats) noexcept
    {
        const BOOL ok = ::GetQueuedCompletionStatusEx(port(), entries, batch_size_, &count, wait, FALSE);
        stat_blocks::bump(stats, counter::dequeue_calls, 1);
        return ok ? 0 : ::GetLastError();
    }

    /// The dequeue of a thread with nothing to run: looks at the port without
    /// waiting for up to idle_spin_, then blocks until a packet comes. As
    /// dequeue(); WAIT_TIMEOUT when the spin found the fallback queue
    /// holding work, or the drain, instead of a packet.
    DWORD dequeue_idle(OVERLAPPED_ENTRY* entries, ULONG& count, stat_block& stats) noexcept
    {
        if (idle_spin_.count() > 0) {
            const auto until = std::chrono::steady_clock::now() + idle_spin_;
            do {
                const DWORD error = dequeue(entries, count, 0, stats);
                if (error != WAIT_TIMEOUT) {
                    if (error == 0) stat_blocks::bump(stats, counter::spin_finds, 1);
                    return error;
                }
                // NOTE: what a blocking wait would learn of by a packet
                // (posts the port refused, the end of the drain) ends the
                // spin too: nobody wakes a thread that is not waiting.
                if (fallback_size_.load(std::memory_order_acquire) != 0) {
                    stat_blocks::bump(stats, counter::spin_finds, 1);
                    return WAIT_TIMEOUT;
                }
                if (work_.drained()) return WAIT_TIMEOUT;
            } while (std::chrono::steady_clock::now() < until);
        }
        stat_blocks::bump(stats, counter::idle_waits, 1);
        return dequeue(entries, count, INFINITE, stats);
    }

    static HANDLE create_port(unsigned concurrency_hint)
    {
        ensure_winsock();
        HANDLE port = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, concurrency_hint);
        if (port == nullptr) {
            throw std::system_error(static_cast<int>(::GetLastError()), std::system_category(),
                                    "CreateIoCompletionPort");
        }
        return port;
    }

    bool take_injected_failure() noexcept
    {
        unsigned n = inject_failures_.load(std::memory_order_relaxed);
        while (n != 0) {
            if (inject_failures_.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) return true;
        }
        return false;
    }

    void dispatch(const OVERLAPPED_ENTRY& entry) noexcept
    {
        if (static_cast<completion_key>(entry.lpCompletionKey) == completion_key::wake ||
            entry.lpOverlapped == nullptr) {
            return;
        }
        auto* op = static_cast<overlapped_op*>(entry.lpOverlapped);
        // NOTE: complete() may resume a coroutine that destroys op; only
        // `this` is touched afterwards.
        op->complete(op, op->Internal, entry.dwNumberOfBytesTransferred);
        work_finished();
    }

    /// Completes, on this pool thread, every op whose post the port refused.
    void drain_fallback() noexcept
    {
        op_queue list;
        {
            std::lock_guard lock(fallback_mutex_);
            list = std::move(fallback_);
            fallback_size_.store(0, std::memory_order_release);
        }
        while (overlapped_op* op = list.pop_front()) {
            op->complete(op, op->Internal, static_cast<std::uint32_t>(op->InternalHigh));
            work_finished();
            if (current_thread_state != nullptr && current_thread_state->owner == this) {
                run_deferred(*current_thread_state);
            }
        }
    }

    /// Resumes what the completion just handled deferred, in order; a resumed
    /// coroutine may defer more, which runs in the same pass. Each is a
    /// chain of its own, with its own turn.
    static void run_deferred(thread_state& self) noexcept
    {
        // NOTE: by index: a resumed coroutine may append (and reallocate).
        for (std::size_t i = 0; i < self.deferred.size(); ++i) {
            self.turn_streak = 0;
            self.deferred[i].resume();
        }
        self.deferred.clear();
    }

    /// Runs, in order, the ready operations of one pass, each as a turn of
    /// its own.
    void serve_ready(thread_state& self, op_queue& pass) noexcept
    {
        while (overlapped_op* op = pass.pop_front()) {
            self.turn_streak = 0;
            if (self.quiet_turns > 0) --self.quiet_turns;
            // NOTE: complete() may resume a coroutine that destroys op.
            op->complete(op, 0, static_cast<std::uint32_t>(op->InternalHigh));
            work_finished();
            run_deferred(self);
        }
    }

    static unsigned& off_pool_streak() noexcept
    {
        static thread_local unsigned streak = 0;
        return streak;
    }

    /// This scheduler's state on the calling thread, if it is inside run().
    thread_state* state_of_this_thread() const noexcept
    {
        for (thread_state* t = current_thread_state; t != nullptr; t = t->outer) {
            if (t->owner == this) return t;
        }
        return nullptr;
    }

    /// Timer-thread hook: hands the fallback queue back to the port. Returns
    /// true when the queue is empty (nothing more to retry).
    static bool retry_fallback(void* context) noexcept
    {
        auto* self = static_cast<scheduler*>(context);
        std::lock_guard lock(self->fallback_mutex_);
        while (overlapped_op* op = self->fallback_.pop_front()) {
            // RACE: off the queue before the post, which clears its link:
            // once posted, the op may complete and its frame be freed on
            // another thread at once. A refused post puts it back first.
            if (!::PostQueuedCompletionStatus(self->port(), static_cast<DWORD>(op->InternalHigh),
                                              static_cast<ULONG_PTR>(completion_key::posted), op)) {
                self->fallback_.push_front(*op);
                return false;
            }
            self->fallback_size_.fetch_sub(1, std::memory_order_release);
        }
        return true;
    }

    static void post_from_timer(void* context, overlapped_op* op) noexcept
    {
        static_cast<scheduler*>(context)->post_started(op);
    }

    void wake_one() noexcept
    {
        count(counter::posts);
        ::PostQueuedCompletionStatus(port(), 0, static_cast<ULONG_PTR>(completion_key::wake), nullptr);
    }

    unique_port port_;
    const unsigned batch_size_;
    const bool skip_completion_on_success_;
    const unsigned inline_budget_;
    const unsigned port_check_interval_;
    // A day: past it the spin's deadline could overflow the clock.
    static constexpr std::chrono::microseconds max_idle_spin = std::chrono::hours(24);
    const std::chrono::microseconds idle_spin_;
    work_count work_;
    std::atomic<unsigned> inject_failures_{0};

    std::mutex fallback_mutex_;
    op_queue fallback_;
    std::atomic<std::size_t> fallback_size_{0};

    stat_blocks stats_;

    // Last: its thread calls back into the members above, so it must be
    // destroyed (and joined) first.
    timer_service timers_;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
