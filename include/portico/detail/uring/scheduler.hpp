// portico: the io_uring scheduler behind io_context on Linux: one ring per
// thread inside run(), posts, defer, stop and the work count
// (docs/design/uring.md).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/stat_blocks.hpp>
#include <portico/detail/work_count.hpp>
#include <portico/io_statistics.hpp>
#include <portico/detail/uring/operation.hpp>
#include <portico/detail/uring/ring.hpp>
#include <portico/detail/uring/socket_state.hpp>
#include <portico/detail/uring/timer_service.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

class scheduler;
struct ring_slot;

/// What a thread inside scheduler::run() knows about itself. Only that
/// thread touches it.
struct thread_state {
    scheduler* owner;
    stat_block* stats;
    thread_state* outer; // the run() this one is nested in, if any
    ring_slot* slot;     // the thread's ring (a nested run() keeps the outer one's)
    // Coroutines to resume once the completion being handled returns
    // (scheduler::defer).
    std::vector<std::coroutine_handle<>> deferred{};
};

inline thread_local thread_state* current_thread_state = nullptr;

/// One pool thread's ring, and what other threads may do to it: hand it an
/// operation (its inbox), wake it, cancel its requests (synchronously, in
/// the kernel: ring::cancel), and leave it a cancel it must finish once it
/// has submitted what it queued (scheduler::cancel, cancel_descriptor).
/// Made by the first run() that finds no free one, kept until the
/// scheduler goes; a thread that leaves run() frees it for the next.
struct ring_slot {
    using op_queue = intrusive_queue<operation, &operation::next_posted>;

    explicit ring_slot(unsigned i);
    ring_slot(const ring_slot&) = delete;
    ring_slot& operator=(const ring_slot&) = delete;

    /// Submitted to and taken from by its thread only (queue_owned,
    /// enter_owned, take_owned): no lock.
    ring io;
    const unsigned index;
    /// scheduler::ring_bit(index), for socket_state::note_ring.
    const std::uint16_t bit;
    /// Whether requests may be queued on `io` and not yet submitted, for
    /// other threads: set by its thread before the first of a turn's
    /// requests is known to anyone, cleared once the kernel took them all
    /// (scheduler::submit, after_submitting). `published` is its thread's
    /// copy.
    std::atomic<bool> unsubmitted{false};
    bool published = false;
    /// An operation on this ring was marked by a cancel from another thread
    /// (operation::cancel_marked): its thread looks at what it submits next.
    std::atomic<bool> recheck{false};
    /// Queue position up to which its thread looked at submitted requests.
    std::uint32_t scanned = 0;
    /// Sockets whose cancel waits for this ring's thread to submit its
    /// queue (socket_state::next_owed), under owed_mutex.
    std::mutex owed_mutex;
    socket_state* owed_head = nullptr;
    std::atomic<std::size_t> owed_size{0};
    /// Set by its thread before it waits in the ring, cleared by the one
    /// waker that exchanges it to false and sends the wake-up (scheduler::
    /// sleep and wake_one say how the two sides meet).
    std::atomic<bool> sleeping{false};
    /// A wake-up for it was refused: the timer thread's retry sends another.
    std::atomic<bool> wake_refused{false};
    /// A thread's outermost run() holds it (written under the scheduler's
    /// slots_mutex_, read anywhere).
    std::atomic<bool> in_use{false};
    /// Posts made on its thread, completed by that thread: only it touches
    /// the queue.
    op_queue local;
    /// Operations other threads handed to this ring's thread
    /// (scheduler::post_to), which it completes before it next waits.
    std::mutex inbox_mutex;
    op_queue inbox;
    std::atomic<std::size_t> inbox_size{0};
};

/// The io_uring scheduler: one ring per thread inside run() (docs/design/
/// uring.md, "One ring per pool thread"). A pool thread submits its
/// requests to its own ring and takes their completions from it, with no
/// lock; a post made on a pool thread stays on that thread; a post made
/// anywhere else goes to a shared queue that every pool thread drains, and
/// wakes one sleeping thread with an IORING_OP_MSG_RING from the
/// scheduler's wake-up ring.
///
/// Work accounting: every operation that will produce a completion counts
/// as outstanding from before it can complete until after its completion has
/// been dispatched. After stop(), run() returns once that count is zero:
/// one count for the context, not one per ring.
///
/// Thread safety: every member may be called from any thread, but submit()
/// only from a thread inside run().
class scheduler {
public:
    /// The IOCP scheduler's options, so io_context passes the same ones;
    /// what has no meaning on a ring says so.
    struct options {
        /// No meaning here: every thread in run() has its own ring.
        unsigned concurrency_hint = 0;
        /// Completions one thread takes from its ring at a time.
        unsigned batch_size = 64;
        /// No meaning here: every request completes through the ring.
        bool skip_completion_on_success = true;
        /// Not used yet (no inline completions on this backend so far).
        unsigned inline_budget = 1;
        /// Not used yet (no ready queue on this backend so far).
        unsigned port_check_interval = 16;
        /// How long an idle thread looks at its ring and the queues without
        /// a system call before it sleeps (io_context::options::idle_spin).
        std::chrono::microseconds idle_spin{0};
    };

    /// Rings one scheduler makes at most: run() on more threads at once
    /// than this throws std::length_error.
    static constexpr unsigned max_rings = 256;

    /// Makes the wake-up ring (the threads' rings come with run()). Throws
    /// std::system_error if the system refuses io_uring; its message says
    /// why and what to do.
    explicit scheduler(options opts)
        : batch_size_((std::max)(1u, opts.batch_size)),
          idle_spin_(std::clamp(opts.idle_spin, std::chrono::microseconds::zero(), max_idle_spin)),
          timers_(&scheduler::post_from_timer, &scheduler::retry_wakes, this)
    {}
    /// As scheduler(options), with the default options.
    scheduler() : scheduler(options{}) {}

    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;

    /// Waits for the threads still inside a post, a stop or the last
    /// work_finished() from outside the pool (caller_guard), then closes the
    /// rings. Every run() must have returned.
    ~scheduler()
    {
        while (callers_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    }

    /// Takes and dispatches completions on the calling thread until stop()
    /// has been called and no work is outstanding. The outermost run() of a
    /// thread takes a free ring, or makes one (may throw std::system_error,
    /// or std::length_error past max_rings); a nested run() keeps its
    /// thread's ring.
    void run()
    {
        // NOTE: every allocation this thread needs comes before it takes its
        // block: io_statistics::running_threads counts a thread from there.
        auto batch = std::make_unique<completion[]>(batch_size_);
        thread_state* const outer = current_thread_state;
        ring_slot* slot = nullptr;
        for (thread_state* t = outer; t != nullptr; t = t->outer) {
            if (t->owner == this) {
                slot = t->slot;
                break;
            }
        }
        const bool outermost = slot == nullptr;
        if (outermost) slot = &acquire_slot();
        thread_state self{this, nullptr, outer, slot};
        struct give_back_slot {
            scheduler& owner;
            ring_slot* slot; // null when nested: the outer run() gives it back
            ~give_back_slot()
            {
                if (slot != nullptr) owner.release_slot(*slot);
            }
        } slot_on_exit{*this, outermost ? slot : nullptr};
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
            // RACE: pairs with work_finished() and stop() (work_count.hpp);
            // both wake every sleeping thread (wake_all).
            if (work_.drained()) break;
            run_local(self);
            if (slot->inbox_size.load(std::memory_order_seq_cst) != 0) drain_inbox(self);
            // One dequeue per turn, as one GetQueuedCompletionStatusEx on
            // Windows: a batch of the shared queue and the ring's completions
            // (the wait that follows an empty one is part of it).
            stat_blocks::bump(*stats, counter::dequeue_calls, 1);
            std::size_t injected = 0;
            if (injected_size_.load(std::memory_order_seq_cst) != 0) injected = drain_injected(self);
            std::size_t n = slot->io.take_owned(batch.get(), batch_size_);
            if (n == 0 && injected == 0 && slot->local.empty()) {
                // Nothing to run: submit what the handlers queued and wait, in
                // one system call, then take what came in the same turn. With
                // an idle spin, the wait comes only if the spin finds nothing.
                if (idle_spin_.count() == 0 || !spin(*slot, *stats)) sleep(*slot, *stats);
                n = slot->io.take_owned(batch.get(), batch_size_);
            }
            if (n + injected != 0) stat_blocks::note_batch(*stats, n + injected);
            if (n == 0) {
                // Posts made by the handlers just run come first.
                submit_queued(*slot);
                continue;
            }
            // NOTE: what the last turn queued goes to the kernel before this
            // turn's completions run: one system call for all of it, and the
            // peers can answer while the handlers run.
            submit_queued(*slot);
            stat_blocks::bump(*stats, counter::completions, n);
            for (std::size_t i = 0; i < n; ++i) {
                dispatch(batch[i]);
                run_deferred(self);
            }
        }
    }

    /// Queues `h` to be resumed on the calling thread once the completion it
    /// is handling returns, before the thread takes another. Returns false,
    /// doing nothing, if the calling thread is not inside this scheduler's
    /// run() (or, past the reserved room, out of memory).
    bool defer(std::coroutine_handle<> h) noexcept
    {
        thread_state* t = state_of_this_thread();
        if (t == nullptr) return false;
        try {
            t->deferred.push_back(h);
        } catch (const std::bad_alloc&) {
            return false;
        }
        return true;
    }

    /// Lets run() return once the outstanding count reaches zero. Idempotent.
    void stop() noexcept
    {
        const caller_guard guard(*this);
        // The wake is unconditional (work_count::stop says why), and goes to
        // every sleeping thread: each sleeps in its own ring.
        work_.stop();
        wake_all();
    }

    [[nodiscard]] bool stopped() const noexcept { return work_.stopped(); }

    [[nodiscard]] bool running_in_this_thread() const noexcept { return state_of_this_thread() != nullptr; }

    [[nodiscard]] std::int64_t outstanding() const noexcept { return work_.outstanding(); }

    /// Counts an operation that will produce a completion. Call before the
    /// completion can possibly be dispatched.
    void work_started() noexcept { work_.started(); }

    /// The other half of work_started(), after the completion was handled.
    void work_finished() noexcept
    {
        // A pool thread's run() keeps the scheduler alive; any other caller
        // may be the last count, whose wake-ups let run() return.
        if (running_in_this_thread()) {
            if (work_.finished()) wake_all();
            return;
        }
        const caller_guard guard(*this);
        if (work_.finished()) wake_all();
    }

    /// Posts `op` as new work: it is completed, once, on a pool thread.
    void post(operation* op) noexcept
    {
        work_started();
        post_started(op);
    }

    /// Posts `op` whose work was already counted. On a pool thread it joins
    /// that thread's own queue, which the thread runs before it next waits:
    /// no system call, no lock. Anywhere else it joins the shared queue that
    /// every pool thread drains, and one sleeping thread is woken. Nothing
    /// here can refuse the op; a refused wake-up is sent again by the timer
    /// thread, so the work is delayed, never lost.
    void post_started(operation* op) noexcept
    {
        count(counter::posts);
        // An injected refusal (tests) takes the path of a refused wake-up.
        const bool refused = inject_failures_.load(std::memory_order_relaxed) != 0 && take_injected_failure();
        thread_state* t = state_of_this_thread();
        if (t != nullptr && !refused) {
            t->slot->local.push_back(*op);
            return;
        }
        const caller_guard guard(*this);
        inject(op);
        if (refused) {
            count(counter::post_failures);
            timers_.request_retry();
            return;
        }
        wake_one();
    }

    /// Posts `op`, whose work was already counted, to the thread of ring
    /// `index`: its own queue if that is the calling thread, else the ring's
    /// inbox and a wake-up (a ring nobody runs any more passes it to the
    /// shared queue). Delayed, never lost, as post_started().
    void post_to(unsigned index, operation* op) noexcept
    {
        count(counter::posts);
        thread_state* t = state_of_this_thread();
        if (t != nullptr && t->slot->index == index) {
            t->slot->local.push_back(*op);
            return;
        }
        const caller_guard guard(*this);
        ring_slot* slot = slot_at(index);
        if (slot == nullptr || !slot->in_use.load(std::memory_order_acquire)) {
            inject(op);
            wake_one();
            return;
        }
        {
            std::lock_guard lock(slot->inbox_mutex);
            slot->inbox.push_back(*op);
            // RACE: seq_cst, before `sleeping` is looked at: pairs with sleep().
            slot->inbox_size.fetch_add(1, std::memory_order_seq_cst);
        }
        // NOTE: a thread leaves run() only once the work is drained, and
        // this op's work is counted: the ring's thread is still there.
        if (claim(*slot)) send_wake(*slot);
    }

    /// The next ring with a thread in run(), in turn: the first in use from
    /// `cursor` on (wrapping round), moving `cursor` past it. The calling
    /// thread's ring when no other is in use.
    [[nodiscard]] unsigned next_ring_in_use(unsigned& cursor) const noexcept
    {
        const unsigned n = slot_count_.load(std::memory_order_acquire);
        for (unsigned i = 0; i < n; ++i) {
            const unsigned index = (cursor + i) % n;
            if (slots_[index]->in_use.load(std::memory_order_acquire)) {
                cursor = index + 1;
                return index;
            }
        }
        return ring_of_this_thread();
    }

    /// Queues one request on the calling thread's own ring (which must be
    /// inside run()): `fill` writes its fields into a zeroed entry. The
    /// thread submits its queue once a turn, with its wait (run()), or when
    /// the queue is full. Returns EBUSY if the queue is full and the kernel
    /// takes none of it now (nothing was queued then).
    template <class Fill>
    [[nodiscard]] std::error_code submit(Fill&& fill) noexcept
    {
        thread_state* t = state_of_this_thread();
        assert(t != nullptr && "requests are submitted only by the pool's threads");
        return submit(*t, std::forward<Fill>(fill));
    }

    /// The calling thread's state in its innermost run() of this scheduler,
    /// or null on a thread outside the pool. An operation that starts looks
    /// it up once and passes it on to the calls below that take it.
    [[nodiscard]] thread_state* this_thread() const noexcept { return state_of_this_thread(); }

    /// As submit(), on the ring of `self`, the calling thread's this_thread().
    template <class Fill>
    [[nodiscard]] static std::error_code submit(thread_state& self, Fill&& fill) noexcept
    {
        ring_slot& slot = *self.slot;
        if (!slot.io.queue_owned(fill)) {
            submit_here(slot);
            if (!slot.io.queue_owned(fill)) return {EBUSY, std::system_category()};
        }
        if (!slot.published) {
            slot.published = true;
            // RACE: seq_cst; a close() on another thread that comes after
            // this request's start (by the user's ordering) sees it set, or
            // sees it cleared after the kernel took the request
            // (cancel_descriptor).
            slot.unsubmitted.store(true, std::memory_order_seq_cst);
        }
        return {};
    }

    /// As count(), on the calling thread, whose this_thread() is `self`.
    static void count(thread_state& self, counter c) noexcept { stat_blocks::bump(*self.stats, c, 1); }

    /// The index of the calling thread's ring, which must be inside run().
    [[nodiscard]] unsigned ring_of_this_thread() const noexcept
    {
        const thread_state* t = state_of_this_thread();
        assert(t != nullptr && "only a pool thread has a ring");
        return t->slot->index;
    }

    /// Asks ring `index` to cancel the request of `op` (an operation or a
    /// multishot_operation: user_data_of), from any thread: it completes
    /// with ECANCELED, or as it was about to if it won the race. The caller
    /// may let the op go as soon as this returns: nothing here touches it
    /// later, and the ring's thread touches it only before its completion.
    ///
    /// The kernel cancels only what it has taken (ring::cancel,
    /// synchronous). On the ring's own thread the queue is submitted first.
    /// From another thread the request may still be queued: the op is
    /// marked and the ring told, before the cancel, and the ring's thread
    /// cancels a marked op again once it has submitted it (after_submitting);
    /// one that waits in the kernel meanwhile is woken for it.
    template <class Op>
    void cancel(unsigned index, const Op* op) noexcept
    {
        count(counter::cancel_calls);
        ring_slot* slot = slot_at(index);
        if (slot == nullptr) return;
        const std::uint64_t data = user_data_of(op);
        thread_state* t = state_of_this_thread();
        if (t != nullptr && t->slot == slot) {
            submit_here(*slot);
            if (slot->io.unsubmitted() == 0) {
                (void)slot->io.cancel(data);
                return;
            }
            // The kernel took only part of the queue: as from another thread.
        }
        const caller_guard guard(*this);
        // RACE: seq_cst, mark and flag before the cancel. If the kernel took
        // the request after the cancel looked, it did so under the ring's
        // lock, after these stores, and the ring's thread sees them when
        // that submission returns (after_submitting).
        op->cancel_marked.store(true, std::memory_order_seq_cst);
        slot->recheck.store(true, std::memory_order_seq_cst);
        const std::error_code found = slot->io.cancel(data);
        if (found == std::errc::no_such_file_or_directory && claim(*slot)) send_wake(*slot);
    }

    /// The bit of ring `index` in a set of rings (socket_state::rings): one
    /// bit each for the first 15, the top bit for all the others.
    [[nodiscard]] static std::uint16_t ring_bit(unsigned index) noexcept
    {
        return static_cast<std::uint16_t>(1u << (index < 15 ? index : 15));
    }

    /// Cancels every request on descriptor `fd`, whose shared state is
    /// `state`, on each ring its requests went to (socket_state::rings),
    /// and then, if `close`, closes `fd`. From any thread, with the state's
    /// lock held. Returns true if the caller must release one reference of
    /// the state once it has let the lock go.
    ///
    /// A ring whose thread has requests queued (ring_slot::unsubmitted) may
    /// hold one on `fd` that no cancel can find yet, and closing `fd` would
    /// free its number for a new socket, on which that request would then
    /// run. So the work waits on that ring: the state joins its list, with a
    /// reference, and the ring's thread takes it up once it has submitted
    /// its queue (settle_owed), cancels there, and goes on round the rings;
    /// the last step closes. A cancel already on its way starts again from
    /// the first ring. On the calling thread's own ring the queue is
    /// submitted first.
    [[nodiscard]] bool cancel_descriptor(socket_state& state, int fd, bool close) noexcept
    {
        if (state.rings.load(std::memory_order_relaxed) != 0) count(counter::cancel_calls);
        state.owed_fd = fd;
        state.cursor = 0;
        if (close) state.close_after = true;
        if (state.owed) return false;
        state.owed = true;
        state.acquire();
        return continue_owed(state);
    }

    /// Adds n to counter c: to this thread's own block on a pool thread,
    /// to the shared block (atomically) anywhere else.
    void count(counter c, std::uint64_t n = 1) noexcept
    {
        if (thread_state* t = state_of_this_thread()) {
            stat_blocks::bump(*t->stats, c, n);
        } else {
            stats_.add_shared(c, n);
        }
    }

    /// The counters summed (io_context::statistics()).
    [[nodiscard]] io_statistics statistics() const { return stats_.sum(outstanding()); }

    /// False: no request here skips its completion (the IOCP option).
    [[nodiscard]] bool skip_completion_on_success() const noexcept { return false; }

    /// The pending timers (timer_service.hpp).
    [[nodiscard]] timer_service& timers() noexcept { return timers_; }

    /// Makes the next n posts take the path of a refused hand-over: into
    /// the shared queue with no wake-up, delivered by the timer thread's
    /// retry (tests).
    void inject_post_failures(unsigned n) noexcept { inject_failures_.store(n, std::memory_order_relaxed); }

    /// Rings made so far (tests): one per thread that was inside run() at
    /// the same time, at most.
    [[nodiscard]] unsigned ring_count() const noexcept { return slot_count_.load(std::memory_order_acquire); }

    /// Requests the kernel has taken on ring `index` so far (tests).
    [[nodiscard]] std::uint64_t submissions_on(unsigned index) const noexcept
    {
        const ring_slot* slot = slot_at(index);
        return slot != nullptr ? slot->io.submissions() : 0;
    }

    /// System calls ring `index`'s thread made to submit or wait (tests:
    /// requests submitted together).
    [[nodiscard]] std::uint64_t enters_on(unsigned index) const noexcept
    {
        const ring_slot* slot = slot_at(index);
        return slot != nullptr ? slot->io.enters() : 0;
    }

    /// Threads waiting in their rings now (a snapshot; tests).
    [[nodiscard]] unsigned sleeping_threads() const noexcept
    {
        unsigned sleeping = 0;
        const unsigned n = slot_count_.load(std::memory_order_acquire);
        for (unsigned i = 0; i < n; ++i) sleeping += slots_[i]->sleeping.load(std::memory_order_acquire) ? 1 : 0;
        return sleeping;
    }

    /// Requests the kernel has taken on all rings so far (ring::submissions).
    [[nodiscard]] std::uint64_t submissions() const noexcept
    {
        std::uint64_t total = 0;
        const unsigned n = slot_count_.load(std::memory_order_acquire);
        for (unsigned i = 0; i < n; ++i) total += slots_[i]->io.submissions();
        return total;
    }

private:
    using op_queue = ring_slot::op_queue;

    /// Held by a thread outside the pool while it hands work over and wakes
    /// threads. RACE: the op it hands over may be run at once, the work
    /// drained and the scheduler destroyed while this thread is still
    /// sending a wake-up; the destructor waits for the count to fall to 0.
    /// Taken before the hand-over, so the destructor (which runs after the
    /// drain the hand-over allows) sees it.
    struct caller_guard {
        explicit caller_guard(scheduler& s) noexcept : owner(s)
        {
            owner.callers_.fetch_add(1, std::memory_order_seq_cst);
        }
        caller_guard(const caller_guard&) = delete;
        caller_guard& operator=(const caller_guard&) = delete;
        // The last touch of the scheduler.
        ~caller_guard() { owner.callers_.fetch_sub(1, std::memory_order_seq_cst); }
        scheduler& owner;
    };

    /// The innermost run() of this scheduler on the calling thread, if any.
    thread_state* state_of_this_thread() const noexcept
    {
        for (thread_state* t = current_thread_state; t != nullptr; t = t->outer) {
            if (t->owner == this) return t;
        }
        return nullptr;
    }

    ring_slot* slot_at(unsigned index) const noexcept
    {
        return index < slot_count_.load(std::memory_order_acquire) ? slots_[index].get() : nullptr;
    }

    /// A free ring for a thread entering its outermost run(): the first one
    /// a thread has left, else a new one.
    ring_slot& acquire_slot()
    {
        std::lock_guard lock(slots_mutex_);
        const unsigned n = slot_count_.load(std::memory_order_relaxed);
        for (unsigned i = 0; i < n; ++i) {
            // NOTE: a ring is given back only by a run() that saw the work
            // drained, so it holds no request: the next thread starts clean
            // (at most a stale wake-up waits in it, which dispatch ignores).
            if (!slots_[i]->in_use.load(std::memory_order_relaxed)) {
                slots_[i]->in_use.store(true, std::memory_order_release);
                rings_in_use_.fetch_add(1, std::memory_order_relaxed);
                return *slots_[i];
            }
        }
        if (n == max_rings)
            throw std::length_error("portico: more threads in one io_context's run() than it has rings");
        slots_[n] = std::make_unique<ring_slot>(n);
        slots_[n]->in_use.store(true, std::memory_order_relaxed);
        rings_in_use_.fetch_add(1, std::memory_order_relaxed);
        // RACE: published after it is made: readers load the count (acquire)
        // and read only the slots below it, which never change again.
        slot_count_.store(n + 1, std::memory_order_release);
        return *slots_[n];
    }

    void release_slot(ring_slot& slot) noexcept
    {
        assert(slot.local.empty() && slot.inbox_size.load() == 0 && slot.owed_size.load() == 0 &&
               slot.io.unsubmitted() == 0 && "a thread left run() with work pending");
        std::lock_guard lock(slots_mutex_);
        slot.in_use.store(false, std::memory_order_release);
        rings_in_use_.fetch_sub(1, std::memory_order_relaxed);
    }

    void dispatch(const completion& c) noexcept
    {
        if (c.user_data == wake_token) return;
        const bool failed = c.result < 0;
        const std::uintptr_t status = failed ? static_cast<std::uintptr_t>(-c.result) : 0u;
        const std::uint32_t bytes = failed ? 0u : static_cast<std::uint32_t>(c.result);
        if ((c.user_data & multishot_tag) != 0) {
            auto* op = static_cast<multishot_operation*>(
                reinterpret_cast<operation*>(static_cast<std::uintptr_t>(c.user_data & ~multishot_tag)));
            // Only the last completion, the one without F_MORE, ends the
            // request's one count of work.
            const bool more = (c.flags & IORING_CQE_F_MORE) != 0;
            op->more = more;
            // The request is over, and the op may be armed again: a mark
            // left by its cancel must not cancel the next one.
            if (!more) op->cancel_marked.store(false, std::memory_order_relaxed);
            op->complete(op, status, bytes);
            if (!more) work_finished_here();
            return;
        }
        auto* op = reinterpret_cast<operation*>(static_cast<std::uintptr_t>(c.user_data));
        // NOTE: complete() may resume a coroutine that destroys op; only
        // `this` is touched afterwards.
        op->complete(op, status, bytes);
        work_finished_here();
    }

    /// work_finished() on a pool thread, which keeps the scheduler alive.
    void work_finished_here() noexcept
    {
        if (work_.finished()) wake_all();
    }

    static void run_deferred(thread_state& self) noexcept
    {
        // NOTE: by index, and re-reading the size: a resumed coroutine may
        // defer another, which appends (and may reallocate).
        for (std::size_t i = 0; i < self.deferred.size(); ++i) self.deferred[i].resume();
        self.deferred.clear();
    }

    /// Completes the posts this thread made itself, those there now: a post
    /// made while they run waits for the next round, after the ring's
    /// completions, so a coroutine that keeps posting cannot starve them.
    void run_local(thread_state& self) noexcept
    {
        if (self.slot->local.empty()) return;
        op_queue taken = std::move(self.slot->local);
        complete_all(self, taken);
    }

    /// Completes what other threads handed to this thread's ring.
    void drain_inbox(thread_state& self) noexcept
    {
        op_queue taken;
        {
            std::lock_guard lock(self.slot->inbox_mutex);
            taken = std::move(self.slot->inbox);
            self.slot->inbox_size.store(0, std::memory_order_seq_cst);
        }
        complete_all(self, taken);
    }

    /// Into the shared queue, which every pool thread drains.
    void inject(operation* op) noexcept
    {
        std::lock_guard lock(injected_mutex_);
        injected_.push_back(*op);
        // RACE: seq_cst, before a sleeping thread is looked for: pairs with
        // sleep() (wake_one says how).
        injected_size_.fetch_add(1, std::memory_order_seq_cst);
    }

    /// Completes this thread's share of the shared queue's posts: the queue
    /// divided by the rings in use, at most batch_size_. Returns how many.
    // NOTE: a share, not all: what is posted there (spawn() from main, a
    // burst of hops) begins on the thread that takes it, and its requests
    // stay on that thread's ring, so one thread taking a whole burst keeps
    // it (measured: 16 clients spawned from main all ran on one ring).
    // The rest wait for the threads each post woke. At most a batch, so the
    // ring's completions interleave with a long queue.
    std::size_t drain_injected(thread_state& self) noexcept
    {
        op_queue taken;
        std::size_t n = 0;
        {
            std::lock_guard lock(injected_mutex_);
            const std::size_t rings = (std::max)(1u, rings_in_use_.load(std::memory_order_relaxed));
            const std::size_t queued = injected_size_.load(std::memory_order_relaxed);
            const std::size_t share = (std::min)(static_cast<std::size_t>(batch_size_), (queued + rings - 1) / rings);
            while (n < share) {
                operation* op = injected_.pop_front();
                if (op == nullptr) break;
                taken.push_back(*op);
                ++n;
            }
            injected_size_.fetch_sub(n, std::memory_order_seq_cst);
        }
        complete_all(self, taken);
        return n;
    }

    void complete_all(thread_state& self, op_queue& taken) noexcept
    {
        while (operation* op = taken.pop_front()) {
            stat_blocks::bump(*self.stats, counter::completions, 1);
            op->complete(op, 0, 0);
            work_finished_here();
            run_deferred(self);
        }
    }

    /// Submits this thread's queue and waits in its ring, in one system
    /// call, unless something came meanwhile. The caller's submit_queued()
    /// follows, which submits what is left and looks at what was submitted.
    // RACE: the sleeper publishes `sleeping` and then looks at the state;
    // a waker changes the state and then looks at `sleeping` (wake_one,
    // wake_all, cancel, owe). All seq_cst, so in their one order either the
    // sleeper sees the change here, or the waker sees it asleep and wakes it.
    void sleep(ring_slot& slot, stat_block& stats) noexcept
    {
        slot.sleeping.store(true, std::memory_order_seq_cst);
        if (!work_.drained() && injected_size_.load(std::memory_order_seq_cst) == 0 &&
            slot.inbox_size.load(std::memory_order_seq_cst) == 0 &&
            slot.owed_size.load(std::memory_order_seq_cst) == 0 && !slot.recheck.load(std::memory_order_seq_cst) &&
            slot.io.ready() == 0) {
            stat_blocks::bump(stats, counter::idle_waits, 1);
            (void)slot.io.enter_owned(1);
        }
        // NOTE: a waker that claimed the flag meanwhile has sent (or will
        // send) a wake-up that finds us awake: one more empty turn.
        slot.sleeping.store(false, std::memory_order_relaxed);
    }

    /// The idle spin (options::idle_spin) of a thread with nothing to run:
    /// submits its queue, then looks for anything that would end a sleep,
    /// without a system call, for up to idle_spin_. Returns true, counting
    /// a spin find, if something came; false if the spin ran out (the
    /// caller sleeps, and looks at everything once more first).
    bool spin(ring_slot& slot, stat_block& stats) noexcept
    {
        // NOTE: what the handlers queued goes to the kernel first: its answer
        // may be what the spin waits for.
        submit_queued(slot);
        const auto until = std::chrono::steady_clock::now() + idle_spin_;
        for (unsigned looks = 1;; ++looks) {
            // NOTE: nobody wakes a thread that does not sleep (wake_one looks
            // at `sleeping`), so the spin looks at all that a wake-up stands
            // for, plus completions the kernel holds as task work.
            if (work_.drained()) return true;
            if (injected_size_.load(std::memory_order_acquire) != 0 ||
                slot.inbox_size.load(std::memory_order_acquire) != 0 ||
                slot.owed_size.load(std::memory_order_acquire) != 0 || slot.recheck.load(std::memory_order_acquire) ||
                slot.io.completions_waiting()) {
                stat_blocks::bump(stats, counter::spin_finds, 1);
                return true;
            }
            // A clock read per 16 looks: a few microseconds late at most.
            if (looks % 16 == 0 && std::chrono::steady_clock::now() >= until) return false;
            cpu_relax();
        }
    }

    /// Tells the processor this thread is spinning (it gives a sibling
    /// hyper-thread more room, and leaves the loop without a misprediction).
    static void cpu_relax() noexcept
    {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    }

    /// The turn's submission on a pool thread (run(), sleep()): the queue
    /// goes to the kernel, and once it has taken all of it, the cancels
    /// other threads left this ring are carried out.
    void submit_queued(ring_slot& slot) noexcept
    {
        // Nothing queued or submitted since the last look, and nothing asked
        // of this ring (the usual turn that queued nothing): inline, and no
        // more than these loads.
        if (slot.io.unsubmitted() == 0 && !slot.published && !slot.recheck.load(std::memory_order_relaxed) &&
            slot.owed_size.load(std::memory_order_seq_cst) == 0) {
            return;
        }
        submit_and_settle(slot);
    }

    /// submit_queued()'s slow path: submit_here(), then the owed cancels.
    void submit_and_settle(ring_slot& slot) noexcept
    {
        submit_here(slot);
        if (!slot.published && slot.owed_size.load(std::memory_order_seq_cst) != 0) settle_owed(slot);
    }

    /// Submits the ring's queue, on its own thread, anywhere (inside a
    /// handler too: nothing here takes a lock).
    static void submit_here(ring_slot& slot) noexcept
    {
        if (slot.io.unsubmitted() != 0) (void)slot.io.enter_owned(0);
        after_submitting(slot);
    }

    /// After each submission of the queue, on the ring's thread.
    static void after_submitting(ring_slot& slot) noexcept
    {
        const bool all_taken = slot.io.unsubmitted() == 0;
        if (all_taken && slot.published) {
            slot.published = false;
            // RACE: seq_cst, before the list of owed cancels is looked at
            // (submit_queued): pairs with owe().
            slot.unsubmitted.store(false, std::memory_order_seq_cst);
        }
        const std::uint32_t end = slot.io.submitted_position();
        // NOTE: cleared only once the queue is all taken: a marked request
        // still queued is looked at after a later submission. The requests
        // looked at were taken just now, so their completions have not run
        // and their ops are still there.
        if (slot.recheck.load(std::memory_order_relaxed) &&
            (!all_taken || slot.recheck.exchange(false, std::memory_order_seq_cst))) {
            for (std::uint32_t at = slot.scanned; at != end; ++at) {
                const std::uint64_t data = slot.io.user_data_at(at);
                const auto* op = reinterpret_cast<const operation*>(static_cast<std::uintptr_t>(data & ~multishot_tag));
                if (op != nullptr && op->cancel_marked.load(std::memory_order_seq_cst)) (void)slot.io.cancel(data);
            }
        }
        slot.scanned = end;
    }

    /// Takes up the cancels other threads left this ring (cancel_descriptor),
    /// now that it has submitted its queue. On its thread, holding no lock.
    void settle_owed(ring_slot& slot) noexcept
    {
        socket_state* list = nullptr;
        {
            std::lock_guard lock(slot.owed_mutex);
            list = std::exchange(slot.owed_head, nullptr);
            slot.owed_size.store(0, std::memory_order_seq_cst);
        }
        while (list != nullptr) {
            socket_state* state = list;
            // Off every list now: only this thread links it, until it
            // joins another (continue_owed, under its lock).
            list = std::exchange(state->next_owed, nullptr);
            bool finished = false;
            {
                std::lock_guard lock(*state);
                finished = continue_owed(*state);
            }
            if (finished) state->release();
        }
    }

    /// Cancels `state`'s descriptor on its rings from `state.cursor` on, and
    /// closes it after the last if asked. Returns false where it must wait for
    /// a ring's thread, which goes on from there; true when done (the
    /// caller then releases the reference the work held). State lock held.
    bool continue_owed(socket_state& state) noexcept
    {
        thread_state* here = state_of_this_thread();
        const unsigned n = slot_count_.load(std::memory_order_acquire);
        const std::uint16_t rings = state.rings.load(std::memory_order_relaxed);
        for (; state.cursor < n; ++state.cursor) {
            if ((rings & ring_bit(state.cursor)) == 0) continue;
            ring_slot& slot = *slots_[state.cursor];
            if (here != nullptr && here->slot == &slot) {
                submit_here(slot);
                if (slot.io.unsubmitted() != 0 && !owe(slot, state)) return false;
            } else if (slot.unsubmitted.load(std::memory_order_seq_cst) && !owe(slot, state)) {
                return false;
            }
            (void)slot.io.cancel_all_on(state.owed_fd);
        }
        if (state.close_after) ::close(state.owed_fd);
        state.owed_fd = -1;
        state.cursor = 0;
        state.close_after = false;
        state.owed = false;
        return true;
    }

    /// Leaves `state` on `slot`'s list of owed cancels, for its thread.
    /// Returns true if that thread has meanwhile submitted its queue and the
    /// state was taken back (the caller cancels there itself), false if the
    /// thread will carry on. State lock held.
    bool owe(ring_slot& slot, socket_state& state) noexcept
    {
        const caller_guard guard(*this);
        {
            std::lock_guard lock(slot.owed_mutex);
            state.next_owed = slot.owed_head;
            slot.owed_head = &state;
            slot.owed_size.fetch_add(1, std::memory_order_seq_cst);
        }
        // RACE: seq_cst, after joining the list; the ring's thread clears
        // `unsubmitted` and then looks at the list (submit_queued). Either
        // it sees the state there, or this sees the flag cleared. A thread
        // that submits with its wait (sleep) is woken to look.
        if (slot.unsubmitted.load(std::memory_order_seq_cst)) {
            if (claim(slot)) send_wake(slot);
            return false;
        }
        std::lock_guard lock(slot.owed_mutex);
        for (socket_state** link = &slot.owed_head; *link != nullptr; link = &(*link)->next_owed) {
            if (*link == &state) {
                *link = std::exchange(state.next_owed, nullptr);
                slot.owed_size.fetch_sub(1, std::memory_order_seq_cst);
                return true;
            }
        }
        return false; // the ring's thread took the list: it carries on
    }

    /// Wakes one sleeping thread, if there is one (a busy one looks at the
    /// shared queue before it next waits). Starts at a different ring each
    /// time, to spread the posts made off the pool.
    void wake_one() noexcept
    {
        const unsigned n = slot_count_.load(std::memory_order_acquire);
        if (n == 0) return;
        const unsigned first = next_wake_.fetch_add(1, std::memory_order_relaxed);
        for (unsigned i = 0; i < n; ++i) {
            ring_slot& slot = *slots_[(first + i) % n];
            if (claim(slot)) {
                send_wake(slot);
                return;
            }
        }
    }

    /// Wakes every sleeping thread (stop, the drain).
    void wake_all() noexcept
    {
        const unsigned n = slot_count_.load(std::memory_order_acquire);
        for (unsigned i = 0; i < n; ++i) {
            if (claim(*slots_[i])) send_wake(*slots_[i]);
        }
    }

    /// Whether the caller is the one waker of a sleeping thread.
    static bool claim(ring_slot& slot) noexcept
    {
        return slot.sleeping.load(std::memory_order_seq_cst) &&
               slot.sleeping.exchange(false, std::memory_order_seq_cst);
    }

    /// Posts a wake_token completion into `slot`'s ring with IORING_OP_MSG_RING
    /// from the wake-up ring, which any thread may submit to (under its
    /// lock). A refusal, at submission or in the completion that
    /// IOSQE_CQE_SKIP_SUCCESS leaves only for a failure, marks the slot for
    /// the timer thread's retry.
    bool send_wake(ring_slot& slot) noexcept
    {
        const int target = slot.io.fd();
        const std::error_code refused = waker_.submit([&slot, target](io_uring_sqe& sqe) {
            sqe.opcode = IORING_OP_MSG_RING;
            sqe.flags = IOSQE_CQE_SKIP_SUCCESS;
            sqe.fd = target;
            sqe.addr = IORING_MSG_DATA;
            sqe.off = wake_token; // the user_data of the completion it posts
            sqe.user_data = slot.index;
        });
        bool delivered = !refused;
        bool retry = !delivered;
        // NOTE: the message is delivered, or fails, inside the submission
        // (a target ring without IORING_SETUP_IOPOLL or DEFER_TASKRUN), so a
        // failure's completion is there to be taken now.
        // RACE: another waker may take the failure of ours, and we one of
        // its: whoever takes a failure marks its ring and asks for the retry.
        completion failed[8];
        while (const std::size_t k = waker_.take(failed, 8)) {
            for (std::size_t i = 0; i < k; ++i) {
                if (ring_slot* s = slot_at(static_cast<unsigned>(failed[i].user_data))) {
                    s->wake_refused.store(true, std::memory_order_release);
                    retry = true;
                    if (s == &slot) delivered = false;
                }
            }
        }
        if (refused) slot.wake_refused.store(true, std::memory_order_release);
        if (retry) timers_.request_retry();
        return delivered;
    }

    /// Timer-thread hook: sends the wake-ups that were refused, and wakes a
    /// thread for posts queued with every thread asleep. Returns true when
    /// nothing is left to retry.
    static bool retry_wakes(void* context) noexcept
    {
        auto& self = *static_cast<scheduler*>(context);
        bool done = true;
        const unsigned n = self.slot_count_.load(std::memory_order_acquire);
        for (unsigned i = 0; i < n; ++i) {
            ring_slot& slot = *self.slots_[i];
            if (slot.wake_refused.exchange(false, std::memory_order_acq_rel) && !self.send_wake(slot)) done = false;
        }
        if (self.injected_size_.load(std::memory_order_seq_cst) != 0) {
            // Until a pool thread has taken them: a busy one will, or the
            // next retry wakes one that sleeps.
            self.wake_one();
            done = false;
        }
        return done;
    }

    static void post_from_timer(void* context, operation* op) noexcept
    {
        static_cast<scheduler*>(context)->post_started(op);
    }

    bool take_injected_failure() noexcept
    {
        unsigned n = inject_failures_.load(std::memory_order_relaxed);
        while (n != 0 && !inject_failures_.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
        }
        return n != 0;
    }

    const unsigned batch_size_;
    // A day: past it the spin's deadline could overflow the clock.
    static constexpr std::chrono::microseconds max_idle_spin = std::chrono::hours(24);
    const std::chrono::microseconds idle_spin_;
    stat_blocks stats_;
    work_count work_;
    // The wake-up ring: only IORING_OP_MSG_RING to the threads' rings, from
    // any thread, under its own locks.
    ring waker_;
    std::mutex slots_mutex_;
    std::array<std::unique_ptr<ring_slot>, max_rings> slots_{};
    std::atomic<unsigned> slot_count_{0};
    std::atomic<unsigned> rings_in_use_{0}; // a hint for drain_injected's share
    std::atomic<unsigned> next_wake_{0};
    std::mutex injected_mutex_;
    op_queue injected_;
    std::atomic<std::size_t> injected_size_{0};
    std::atomic<unsigned> inject_failures_{0};
    std::atomic<unsigned> callers_{0}; // caller_guard

    // Last: its thread calls back into the members above, so it must be
    // destroyed (and joined) first.
    timer_service timers_;
};

inline ring_slot::ring_slot(unsigned i) : io(ring::queued_submission_entries), index(i), bit(scheduler::ring_bit(i)) {}

} // namespace detail::uring

PORTICO_NAMESPACE_END
