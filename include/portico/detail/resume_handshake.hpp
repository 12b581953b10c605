// portico: who resumes a suspended awaiter — the thread that started its
// operation, or the thread that completed it.
#pragma once

#include <portico/config.hpp>

#include <atomic>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The one state machine every awaiter with an asynchronous completer uses
/// (socket operations, accepts, queued writes, name lookups). Three parties
/// race: the *starter* (await_suspend, on the awaiting thread), the
/// *completer* (whoever delivers the result: a pool thread, a system thread,
/// another writer) and the *canceller* (a stop callback, on any thread).
/// Exactly one of starter and completer resumes the coroutine, so it resumes
/// once; the state says which.
///
///   from            event                           to              then
///   idle            starter: suspend()              running         the completer resumes
///   idle            completer: complete()           done            the starter continues inline
///   idle            canceller: request_cancel()     cancel_pending  the starter cancels before suspending
///   cancel_pending  starter: suspend()              running         (after cancelling)
///   cancel_pending  starter: suspend_or_abandon()   done            the starter continues inline, stopped
///   cancel_pending  completer: complete()           done            the starter continues inline
///   running         completer: complete()           done            the completer resumes
///   running         canceller: request_cancel()     running         the canceller cancels the operation
///   running         frame destroyed: orphan()       orphaned        the completer frees the frame
///   orphaned        completer: complete()           done            (frees the frame, resumes nothing)
///
/// complete() returns the state it replaced: `running` means "resume now",
/// `orphaned` means "free the frame", anything else means "the starter
/// continues". suspend() returns false when the completion came first.
class resume_handshake {
public:
    enum class state : unsigned char { idle, cancel_pending, running, done, orphaned };

    /// Starter, once its operation is underway: publishes `running`, unless
    /// the completion already arrived (false: continue inline). Before
    /// publishing it calls `cancel()` if a stop came in between, so a stop
    /// request is never lost in the window between registering the stop
    /// callback and suspending.
    template <class Cancel>
    bool suspend(Cancel cancel) noexcept
    {
        auto s = state_.load(std::memory_order_acquire);
        bool cancelled = false; // once: a spurious CAS failure must not cancel (and count) twice
        for (;;) {
            if (s == state::done) return false;
            if (s == state::cancel_pending && !cancelled) {
                cancel();
                cancelled = true;
            }
            // RACE: after this succeeds the completer may resume the coroutine
            // and destroy the awaiter at once: the caller touches nothing more.
            if (state_.compare_exchange_weak(s, state::running, std::memory_order_acq_rel)) return true;
        }
    }

    /// Starter without a cancellation window (nothing to cancel before it
    /// suspends): as suspend(), with no cancel step.
    bool suspend() noexcept
    {
        return suspend([]() noexcept {});
    }

    /// Starter of an operation that a stop abandons rather than cancels and
    /// waits for (a name lookup the system may never answer): as suspend(),
    /// but a stop that came first ends it (`stopped` set, false returned).
    bool suspend_or_abandon(bool& stopped) noexcept
    {
        auto s = state_.load(std::memory_order_acquire);
        for (;;) {
            if (s == state::done) return false;
            if (s == state::cancel_pending) {
                if (state_.compare_exchange_weak(s, state::done, std::memory_order_acq_rel)) {
                    stopped = true;
                    return false;
                }
                continue;
            }
            // RACE: as in suspend().
            if (state_.compare_exchange_weak(s, state::running, std::memory_order_acq_rel)) return true;
        }
    }

    /// Completer: publishes `done` and returns the state it replaced.
    state complete() noexcept { return state_.exchange(state::done, std::memory_order_acq_rel); }

    /// Completer that acts only from one state: `expected -> done`, true if
    /// it happened. From `running`: a canceller that resumes the coroutine
    /// itself, never taking over from a starter still at work. From `idle`:
    /// a completer that lets the starter continue inline, and otherwise
    /// hands the resumption to a packet whose dispatch calls complete().
    bool complete_from(state expected) noexcept
    {
        return state_.compare_exchange_strong(expected, state::done, std::memory_order_acq_rel);
    }

    /// Canceller: marks a stop that came before the starter suspended (the
    /// starter then cancels) and returns false; returns true if the operation
    /// is running, and the caller must cancel it itself; false too once done.
    bool request_cancel() noexcept
    {
        auto s = state_.load(std::memory_order_acquire);
        while (s == state::idle) {
            if (state_.compare_exchange_weak(s, state::cancel_pending, std::memory_order_acq_rel)) return false;
        }
        return s == state::running;
    }

    /// The awaiter is being destroyed while suspended: `running -> orphaned`,
    /// so the completer frees the frame instead of resuming it. False if the
    /// operation was not running (nothing pending) or completed meanwhile
    /// (`done`: the completer is resuming a frame being destroyed, a bug in
    /// the caller).
    bool orphan() noexcept
    {
        auto s = state::running;
        return state_.compare_exchange_strong(s, state::orphaned, std::memory_order_acq_rel);
    }

    [[nodiscard]] state load(std::memory_order order = std::memory_order_acquire) const noexcept
    {
        return state_.load(order);
    }

    /// Back to idle, for an awaiter reused for another operation (only when
    /// no party can still touch it).
    void reset() noexcept { state_.store(state::idle, std::memory_order_relaxed); }

private:
    std::atomic<state> state_{state::idle};
};

} // namespace detail

PORTICO_NAMESPACE_END
