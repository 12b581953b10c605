// portico: what a signal_set shares with its waiting coroutines — the
// events it remembers and the waiters, above the backend's signal registry.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/backend.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/signal_listener.hpp>
#include <portico/error.hpp>
#include <portico/signal_event.hpp>
#include <portico/stop_token.hpp>

#include <array>
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <mutex>
#include <optional>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// What the state sees of a coroutine awaiting signal_set::wait(): a node of
/// its waiter list, the result handed over, and the packet that resumes it
/// on a pool thread. Who resumes it is settled by `handshake`: a waiter
/// finished before it suspended continues inline; after, the posted packet
/// resumes it (or frees its frame, if the frame was destroyed meanwhile).
struct signal_waiter : backend::operation {
    using backend::operation::operation;

    list_hook<signal_waiter> hook;
    std::error_code error;
    signal_event event = signal_event::interrupt;
    std::coroutine_handle<> continuation;
    resume_handshake handshake;
    /// Whether the awaiting frame comes from frame_allocation (so it can be
    /// kept alive past its destruction), and where it is then kept.
    bool deferrable = false;
    deferred_frame deferred;
};

/// A signal_set's state. It lives on the heap and is freed when the last of
/// its owner and its live signal_wait_ops lets go (a reference count), so a
/// waiter outliving its set can still unlink itself safely.
///
/// Waiters count as the context's outstanding work from the moment they are
/// queued until their resumption was dispatched (or they were unlinked
/// before suspending): the context cannot drain, and its port cannot go,
/// while a delivery may still be posted to it.
class signal_state : public signal_listener {
public:
    /// A state delivering to `sched`, registered for the events in `mask`
    /// (signal_bit()s), that closes itself when `context_stop` is requested.
    /// The caller holds the first reference. Throws what the registry's
    /// add() throws (nothing is left behind) and std::bad_alloc.
    static signal_state* open(backend::scheduler& sched, unsigned mask, portico::stop_token context_stop)
    {
        auto* self = new signal_state(sched);
        try {
            backend::signal_registry::instance().add(*self, mask);
        } catch (...) {
            delete self;
            throw;
        }
        // Last: its callback may run at once (the context is already
        // stopped) and close what was just registered.
        self->on_context_stop_.emplace(std::move(context_stop), closer{self});
        return self;
    }

    signal_state(const signal_state&) = delete;
    signal_state& operator=(const signal_state&) = delete;

    void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }

    void release() noexcept
    {
        // RACE: acq_rel so the thread that frees sees every other thread's
        // last writes to the state.
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// The owner lets go: no event is delivered any more, every waiter
    /// resumes with operation_aborted, the owner's reference is dropped.
    void release_owner() noexcept
    {
        // Waits for a running context-stop callback, which touches `this`.
        on_context_stop_.reset();
        backend::signal_registry::instance().remove(*this);
        abort_waiters(true);
        release();
    }

    /// Adds and removes events from the selection; remembered occurrences of
    /// a removed event are forgotten.
    void change(unsigned added, unsigned removed) noexcept
    {
        const unsigned now = backend::signal_registry::instance().change(*this, added, removed);
        std::lock_guard lock(mutex_);
        for (unsigned i = 0; i < pending_.size(); ++i) {
            if ((now & signal_bit(event_at(i))) == 0) pending_[i] = 0;
        }
    }

    [[nodiscard]] unsigned selection() noexcept { return backend::signal_registry::instance().selected(*this); }

    /// Resumes every waiter with operation_aborted; with `close`, every
    /// later wait too. Remembered events are kept.
    void abort_waiters(bool close) noexcept
    {
        // NOTE: finished under the lock, not moved to a local list first: a
        // canceller's unlink() asks contains(), which only sees whether the
        // node is linked in *a* list, so a waiter in a local list would look
        // queued and be unlinked (and finished) twice.
        std::lock_guard lock(mutex_);
        if (close) closed_ = true;
        while (signal_waiter* w = waiters_.pop_front()) {
            w->error = make_error_code(errc::operation_aborted);
            finish(*w);
        }
    }

    /// wait() on a coroutine: takes a remembered event or the closed state's
    /// error (true: `w` holds the result, continue inline), or queues `w`
    /// and counts it as outstanding work (false).
    bool take_or_wait(signal_waiter& w) noexcept
    {
        std::lock_guard lock(mutex_);
        if (closed_) {
            w.error = make_error_code(errc::operation_aborted);
            return true;
        }
        for (unsigned i = 0; i < pending_.size(); ++i) {
            if (pending_[i] == 0) continue;
            --pending_[i];
            w.event = event_at(i);
            return true;
        }
        // Counted before it is visible: a finisher may post it at once.
        sched_.work_started();
        waiters_.push_back(w);
        return false;
    }

    /// Removes `w` from the waiter list if it is still there; true if it was
    /// (the caller then owns finishing it, or its work count).
    bool unlink(signal_waiter& w) noexcept
    {
        std::lock_guard lock(mutex_);
        if (!waiters_.contains(w)) return false;
        waiters_.remove(w);
        return true;
    }

    /// Resumes a waiter taken from the list: if it has not suspended yet,
    /// it continues inline (and drops its own work count); otherwise its
    /// packet goes through the port, so it resumes on a pool thread, never
    /// on the thread that finished it (the console handler's, a stop
    /// callback's).
    void finish(signal_waiter& w) noexcept
    {
        // RACE: idle means await_suspend has not published `running` yet:
        // it sees `done` and continues inline. Otherwise the packet resumes
        // it, or frees the frame if it was destroyed meanwhile.
        if (!w.handshake.complete_from(resume_handshake::state::idle)) sched_.post_started(&w);
    }

    /// The other half of take_or_wait()'s count, for a waiter that continues
    /// inline or is unlinked before anything was posted for it.
    void work_finished() noexcept { sched_.work_finished(); }

private:
    using waiter_list = intrusive_list<signal_waiter, &signal_waiter::hook>;

    struct closer {
        signal_state* state;
        void operator()() const noexcept { state->abort_waiters(true); }
    };

    explicit signal_state(backend::scheduler& sched) noexcept : signal_listener(&signal_state::on_signal), sched_(sched)
    {}
    ~signal_state() = default;

    static constexpr signal_event event_at(unsigned index) noexcept
    {
        return static_cast<signal_event>(index + static_cast<unsigned>(signal_event::interrupt));
    }

    // The registry delivers an event this state selects (under its lock, on
    // the thread the system raised it on).
    static void on_signal(signal_listener* base, signal_event event) noexcept
    {
        auto* self = static_cast<signal_state*>(base);
        signal_waiter* w = nullptr;
        {
            std::lock_guard lock(self->mutex_);
            w = self->waiters_.pop_front();
            if (w == nullptr) {
                // Nobody waits: remembered for the next wait().
                auto& count =
                    self->pending_[static_cast<unsigned>(event) - static_cast<unsigned>(signal_event::interrupt)];
                if (count != UINT32_MAX) ++count;
                return;
            }
        }
        w->error = {};
        w->event = event;
        self->finish(*w);
    }

    static_assert(static_cast<unsigned>(signal_event::terminate) - static_cast<unsigned>(signal_event::interrupt) == 3,
                  "pending_ has one counter per signal_event");

    backend::scheduler& sched_;
    std::atomic<unsigned> refs_{1};
    std::mutex mutex_;
    bool closed_ = false;
    /// Occurrences delivered while nobody waited, per event (interrupt first).
    std::array<std::uint32_t, 4> pending_{};
    waiter_list waiters_;
    std::optional<portico::stop_callback<closer>> on_context_stop_;
};

} // namespace detail

PORTICO_NAMESPACE_END
