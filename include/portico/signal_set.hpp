// portico: signal_set — await Ctrl+C, Ctrl+Break, the console closing,
// logoff or shutdown.
#pragma once

#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/detail/signal_listener.hpp>
#include <portico/detail/signal_state.hpp>
#include <portico/error.hpp>
#include <portico/io_context.hpp>
#include <portico/signal_event.hpp>
#include <portico/stop_token.hpp>

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Awaiter of signal_set::wait(). Yields io_result<signal_event>: the event,
/// or operation_aborted (stop requested on the awaiting coroutine's token,
/// signal_set::cancel(), the set destroyed, or the set's context stopped),
/// or bad_state (the set was moved from).
///
/// Awaiting it (co_await): completes at once with an event remembered
/// before it was awaited; otherwise suspends until the next event the set
/// selects and resumes on one of the context's pool threads, never on the
/// thread Windows delivers the event on. While suspended it counts as the
/// context's outstanding work. Movable until awaited, awaited once. Never
/// allocates.
class [[nodiscard]] signal_wait_op : private detail::signal_waiter {
public:
    /// Made by signal_set::wait(): `state` is null when the set was moved
    /// from.
    explicit signal_wait_op(detail::signal_state* state) noexcept
        : signal_waiter(&signal_wait_op::on_posted), state_(state)
    {
        if (state_ != nullptr) state_->add_ref();
    }

    /// Moves a wait not awaited yet (when_any, with_timeout... take
    /// awaitables by value).
    signal_wait_op(signal_wait_op&& other) noexcept : signal_waiter(&signal_wait_op::on_posted), state_(other.state_)
    {
        assert(other.handshake.load(std::memory_order_relaxed) == detail::resume_handshake::state::idle &&
               !other.cancel_ && "moving a wait that was already started");
        if (state_ != nullptr) state_->add_ref();
    }
    signal_wait_op(const signal_wait_op&) = delete;
    signal_wait_op& operator=(const signal_wait_op&) = delete;
    signal_wait_op& operator=(signal_wait_op&&) = delete;

    /// Ends the wait if its coroutine is destroyed while suspended in it
    /// (the event it would have had stays with the set).
    ~signal_wait_op()
    {
        // Waits for a stop callback running on another thread: it touches us.
        cancel_.reset();
        if (state_ == nullptr) return;
        if (state_->unlink(*this)) {
            // Destroyed while queued: nobody will finish it, and its work
            // count is ours to drop.
            state_->work_finished();
        } else if (handshake.load() == detail::resume_handshake::state::running) {
            // A finisher took it from the list and its packet may be on the
            // way: the frame stays until it arrives (as accept does).
            // Register before publishing `orphaned`, which lets the packet
            // free the frame.
            if (!deferrable || !detail::orphan_registry::for_this_thread().add(this, &deferred)) std::terminate();
            (void)handshake.orphan();
        }
        state_->release();
    }

    /// @name Awaiter protocol
    /// @{

    /// The awaiter protocol, which co_await calls (see the class comment).
    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        continuation = awaiting;
        deferrable = std::is_base_of_v<detail::frame_allocation, Promise>;
        if (state_ == nullptr) {
            error = make_error_code(errc::bad_state);
            return false;
        }
        portico::stop_token token = detail::stop_token_of(awaiting);
        if (token.stop_requested()) {
            error = make_error_code(errc::operation_aborted);
            return false;
        }
        if (state_->take_or_wait(*this)) return false;
        // Queued: from here an event (on Windows' handler thread), cancel(),
        // the set's end or the context's stop may finish us.
        if (token.stop_possible()) cancel_.emplace(std::move(token), canceller{this});
        // RACE: after this succeeds the finisher's packet may resume the
        // coroutine and destroy this awaiter at once: touch nothing more.
        if (handshake.suspend()) return true;
        // Finished before it suspended: it continues inline, nothing was
        // posted, so the work count it took is dropped here.
        state_->work_finished();
        return false;
    }

    io_result<signal_event> await_resume() const noexcept { return {error, event}; }
    /// @}

private:
    struct canceller {
        signal_wait_op* op;
        void operator()() const noexcept
        {
            // Whoever unlinks the waiter finishes it; if an event or an
            // abort got there first, there is nothing to cancel.
            if (op->state_->unlink(*op)) {
                op->error = make_error_code(errc::operation_aborted);
                op->state_->finish(*op);
            }
        }
    };

    // A waiter finished after it suspended comes back through the port.
    static void on_posted(detail::backend::operation* base, std::uintptr_t, std::uint32_t) noexcept
    {
        auto* self = static_cast<signal_wait_op*>(static_cast<signal_waiter*>(base));
        if (self->handshake.complete() == detail::resume_handshake::state::orphaned) {
            // The frame was destroyed after this packet was posted.
            if (self->deferred.arrive()) detail::frame_allocation::release(self->deferred.block, self->deferred.size);
            return;
        }
        self->continuation.resume();
    }

    detail::signal_state* state_;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

/// Catches requests from outside the program to interrupt or end it (Ctrl+C,
/// Ctrl+Break, the console closing, logoff or shutdown: see signal_event)
/// and hands them to coroutines: `auto [ec, event] = co_await
/// signals.wait();`. The library's replacement for a hand-written
/// SetConsoleCtrlHandler, the counterpart of Asio's signal_set:
///
///     portico::signal_set signals(ctx, {portico::signal_event::interrupt,
///                                       portico::signal_event::hangup});
///     ctx.spawn([](portico::io_context& c, portico::signal_set& s) -> portico::task<> {
///         auto [ec, event] = co_await s.wait();
///         if (!ec) c.stop();
///     }(ctx, signals));
///
/// Delivery. Every signal_set that selects an event gets it, however many
/// there are. Within one set, each occurrence goes to one wait(): the
/// longest-waiting coroutine, or, if none waits, the next wait() (events
/// are remembered, never lost; several remembered ones are handed out one
/// per wait, interrupt first, then quit, hangup, terminate). A waiting
/// coroutine resumes on a pool thread of the set's io_context.
///
/// The process. While at least one signal_set selects an event, that event
/// does not end the process: the program decides. An event no set selects
/// gets the system's default handling (Ctrl+C ends the process), so to let
/// a second Ctrl+C end a program whose shutdown hangs, remove(interrupt)
/// after the first.
///
/// hangup and terminate are different: Windows ends the process soon after
/// delivering them, whatever it answers (a few seconds after a console
/// close). portico holds the process for as long as at least one set still
/// selects the event (until destroyed, or until remove()), at most 20
/// seconds: keep the set alive until the shutdown is done (declare it right
/// after the io_context in main). Once the last one lets go, Windows ends
/// the process, so code after that point may not run. A program that
/// returns from main meanwhile exits normally. See docs/design/shutdown.md.
/// On Linux (the io_uring backend) the events are SIGINT, SIGQUIT, SIGHUP
/// and SIGTERM, caught by handlers installed while a set selects them;
/// nothing ends the process after hangup or terminate, so nothing is held.
///
/// The context. A pending wait counts as the context's outstanding work. Its
/// stop() ends pending waits with operation_aborted, and every later
/// wait() too (a draining context cannot wait for an event that may never
/// come); the set keeps catching its events until it is destroyed.
///
/// Thread safety: every member may be called from any thread at once,
/// except moves and destruction, which must not race with anything.
/// Several coroutines may wait at once.
class signal_set {
public:
    /// A set bound to `ctx` that selects nothing yet (add() selects).
    /// Installs portico's console handler on first use (on Linux: a pipe
    /// and a thread that reads it); throws std::system_error if the system
    /// refuses it, std::bad_alloc.
    explicit signal_set(io_context& ctx) : signal_set(ctx, {}) {}

    /// A set bound to `ctx` that selects `events`; as signal_set(ctx).
    signal_set(io_context& ctx, std::initializer_list<signal_event> events)
        : state_(
              detail::signal_state::open(detail::context_access::scheduler(ctx), mask_of(events), ctx.get_stop_token()))
    {}

    /// Takes over the selection, remembered events and pending waits of
    /// `other`, which is left selecting nothing (its wait() yields
    /// bad_state).
    signal_set(signal_set&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    /// Ends this set (as the destructor does) and takes over `other`, which
    /// is left selecting nothing.
    signal_set& operator=(signal_set&& other) noexcept
    {
        if (this != &other) {
            close();
            state_ = std::exchange(other.state_, nullptr);
        }
        return *this;
    }
    signal_set(const signal_set&) = delete;
    signal_set& operator=(const signal_set&) = delete;

    /// Stops catching: pending waits resume with operation_aborted, and the
    /// events it selected get their default handling again unless another
    /// set selects them. Lets go of a console handler waiting on hangup or
    /// terminate (see the class comment).
    ~signal_set() { close(); }

    /// Selects `event` as well. Nothing for a moved-from set.
    void add(signal_event event) noexcept
    {
        if (state_ != nullptr) state_->change(detail::signal_bit(event), 0);
    }

    /// Stops selecting `event` and forgets its remembered occurrences; once
    /// this returns it is never delivered to this set. Nothing for a
    /// moved-from set.
    void remove(signal_event event) noexcept
    {
        if (state_ != nullptr) state_->change(0, detail::signal_bit(event));
    }

    /// True if this set selects `event`.
    [[nodiscard]] bool contains(signal_event event) const noexcept
    {
        return state_ != nullptr && (state_->selection() & detail::signal_bit(event)) != 0;
    }

    /// Resumes every pending wait with operation_aborted. Later waits and
    /// remembered events are not affected.
    void cancel() noexcept
    {
        if (state_ != nullptr) state_->abort_waiters(false);
    }

    /// Waits for the next event this set selects. See signal_wait_op for the
    /// result; cancel with the stop token, or wrap in with_timeout.
    [[nodiscard]] signal_wait_op wait() noexcept { return signal_wait_op{state_}; }

private:
    static unsigned mask_of(std::initializer_list<signal_event> events) noexcept
    {
        unsigned mask = 0;
        for (signal_event e : events) mask |= detail::signal_bit(e);
        return mask;
    }

    void close() noexcept
    {
        if (state_ != nullptr) std::exchange(state_, nullptr)->release_owner();
    }

    detail::signal_state* state_;
};

PORTICO_NAMESPACE_END
