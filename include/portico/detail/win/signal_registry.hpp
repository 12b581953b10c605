// portico: the process-wide console control handler — Ctrl+C, Ctrl+Break,
// the console closing, logoff and shutdown, handed to every signal_set that
// selects them.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/signal_listener.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/signal_event.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <system_error>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// The console control event `type` (the argument of a HandlerRoutine) as a
/// signal_event; nothing for a type portico does not know.
inline std::optional<signal_event> to_signal_event(DWORD type) noexcept
{
    switch (type) {
    case CTRL_C_EVENT: return signal_event::interrupt;
    case CTRL_BREAK_EVENT: return signal_event::quit;
    case CTRL_CLOSE_EVENT: return signal_event::hangup;
    case CTRL_LOGOFF_EVENT:
    case CTRL_SHUTDOWN_EVENT: return signal_event::terminate;
    default: return std::nullopt;
    }
}

/// Every signal_set of the process, and the one console control handler
/// that serves them (SetConsoleCtrlHandler). The handler is installed by the
/// first add() and never removed: with nothing selecting an event it
/// declines it, and Windows' default handling (ending the process) applies,
/// as if it were not there.
///
/// Why never removed: Wine runs the handlers with its console lock held, and
/// SetConsoleCtrlHandler takes the same lock (nothing documents that Windows
/// does otherwise), so removing the handler while an event is being handled
/// (the handler waits for the program after hangup and terminate) would wait
/// as long as the handler does.
///
/// Thread safety: every member may be called from any thread.
class signal_registry {
public:
    /// The longest the handler holds the process after delivering hangup or
    /// terminate, waiting for every signal_set that selects it to go. Windows
    /// may end the process sooner (a few seconds after a console close).
    static constexpr std::chrono::milliseconds shutdown_grace{20000};

    /// The registry (one per process; never destroyed, nothing to run at exit).
    static signal_registry& instance() noexcept
    {
        static signal_registry registry;
        return registry;
    }

    /// Starts delivering the events in `mask` (signal_bit()s) to `l`.
    /// Installs the console handler on first use; throws std::system_error
    /// if Windows refuses it (`l` is then not added).
    void add(signal_listener& l, unsigned mask)
    {
        install();
        lock_guard lock(*this);
        l.selected = mask;
        listeners_.push_back(l);
    }

    /// Adds the events in `added` to what `l` selects and removes those in
    /// `removed`; returns the new selection. An event removed is never
    /// delivered to `l` once this returns.
    unsigned change(signal_listener& l, unsigned added, unsigned removed) noexcept
    {
        unsigned now = 0;
        {
            lock_guard lock(*this);
            l.selected = (l.selected | added) & ~removed;
            now = l.selected;
        }
        // A handler waiting for hangup or terminate to be let go re-checks.
        ::WakeAllConditionVariable(&changed_);
        return now;
    }

    /// What `l` selects.
    [[nodiscard]] unsigned selected(const signal_listener& l) noexcept
    {
        lock_guard lock(*this);
        return l.selected;
    }

    /// Stops delivering to `l`: once this returns, `l.notify` is not running
    /// and will not run again. Idempotent.
    void remove(signal_listener& l) noexcept
    {
        {
            lock_guard lock(*this);
            if (listeners_.contains(l)) listeners_.remove(l);
        }
        ::WakeAllConditionVariable(&changed_);
    }

    /// What the console handler does with `event`, and the hook through
    /// which tests raise one: notifies every listener that selects it and
    /// returns true if there was one (the event is handled: Windows does not
    /// end the process for it), false otherwise. After delivering hangup or
    /// terminate, waits until no listener selects it any more (destroyed, or
    /// the event removed), at most `grace`: Windows ends the process as soon
    /// as the handler returns, so this is the program's time to shut down.
    bool dispatch(signal_event event, std::chrono::milliseconds grace) noexcept
    {
        const unsigned bit = signal_bit(event);
        lock_guard lock(*this);
        bool delivered = false;
        for (signal_listener* l = listeners_.front(); l != nullptr; l = l->hook.next) {
            if ((l->selected & bit) == 0) continue;
            l->notify(l, event);
            delivered = true;
        }
        if (delivered && (event == signal_event::hangup || event == signal_event::terminate)) {
            using clock = std::chrono::steady_clock;
            const clock::time_point deadline = clock::now() + grace;
            while (any_selects(bit)) {
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
                if (left.count() <= 0) break;
                // NOTE: releases the lock while it sleeps, so the program can
                // remove its listeners; spurious wake-ups just loop.
                const auto ms = (std::min)(left.count(), std::chrono::milliseconds::rep{0x7fffffff});
                ::SleepConditionVariableSRW(&changed_, &lock_, static_cast<DWORD>(ms), 0);
            }
        }
        return delivered;
    }

    /// The HandlerRoutine given to SetConsoleCtrlHandler; Windows runs it on
    /// a thread it creates for each event.
    static BOOL WINAPI on_console_event(DWORD type) noexcept
    {
        const std::optional<signal_event> event = to_signal_event(type);
        if (!event) return FALSE;
        return instance().dispatch(*event, shutdown_grace) ? TRUE : FALSE;
    }

private:
    struct lock_guard {
        explicit lock_guard(signal_registry& r) noexcept : registry(r) { ::AcquireSRWLockExclusive(&r.lock_); }
        ~lock_guard() { ::ReleaseSRWLockExclusive(&registry.lock_); }
        lock_guard(const lock_guard&) = delete;
        lock_guard& operator=(const lock_guard&) = delete;
        signal_registry& registry;
    };

    signal_registry() noexcept = default;

    static void install()
    {
        // Once per process; an exception leaves it to be tried again.
        static const bool installed = [] {
            if (!::SetConsoleCtrlHandler(&signal_registry::on_console_event, TRUE)) {
                throw std::system_error(static_cast<int>(::GetLastError()), std::system_category(),
                                        "SetConsoleCtrlHandler");
            }
            return true;
        }();
        (void)installed;
    }

    bool any_selects(unsigned bit) const noexcept
    {
        for (const signal_listener* l = listeners_.front(); l != nullptr; l = l->hook.next) {
            if ((l->selected & bit) != 0) return true;
        }
        return false;
    }

    SRWLOCK lock_ = SRWLOCK_INIT;
    CONDITION_VARIABLE changed_ = CONDITION_VARIABLE_INIT;
    intrusive_list<signal_listener, &signal_listener::hook> listeners_;
};

// NOTE: never destroyed in effect: a handler thread may still be inside
// dispatch() while the process exits.
static_assert(std::is_trivially_destructible_v<signal_registry>);

} // namespace detail::win

PORTICO_NAMESPACE_END
