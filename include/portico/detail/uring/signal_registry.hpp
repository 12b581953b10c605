// portico: the process-wide signal handlers on Linux — SIGINT, SIGQUIT,
// SIGHUP and SIGTERM, handed to every signal_set that selects them.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/signal_listener.hpp>
#include <portico/signal_event.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// The signal behind each signal_event, in the order of the enumeration.
inline constexpr std::array<int, 4> caught_signals{SIGINT, SIGQUIT, SIGHUP, SIGTERM};

/// The signal `number` as a signal_event; nothing for one portico does not
/// catch.
inline std::optional<signal_event> to_signal_event(int number) noexcept
{
    switch (number) {
    case SIGINT: return signal_event::interrupt;
    case SIGQUIT: return signal_event::quit;
    case SIGHUP: return signal_event::hangup;
    case SIGTERM: return signal_event::terminate;
    default: return std::nullopt;
    }
}

/// Every signal_set of the process, and the signal handlers that serve them.
/// A signal's handler is installed while at least one listener selects its
/// event, and the disposition found before is put back when none does, so a
/// signal nobody selects does what it did without portico (SIGINT ends the
/// process, by default).
///
/// A handler may only do what is async-signal-safe: it writes the signal's
/// number to a pipe, and a thread of the registry's reads the pipe and
/// delivers the event under the lock, as Windows' console handler thread
/// does. Made once per process with its pipe and thread, on first use, and
/// never destroyed (a signal may come while the process exits).
///
/// Thread safety: every member may be called from any thread.
class signal_registry {
public:
    /// Windows ends a process soon after hangup or terminate and the
    /// registry holds it meanwhile; Linux leaves that to the program, so
    /// dispatch() never waits here. Kept for the tests that raise events.
    static constexpr std::chrono::milliseconds shutdown_grace{0};

    /// The registry: its pipe and thread are made on the first call (throws
    /// std::system_error if the system refuses either).
    static signal_registry& instance()
    {
        // Leaked on purpose: see the class comment.
        static signal_registry* registry = new signal_registry;
        return *registry;
    }

    /// Starts delivering the events in `mask` (signal_bit()s) to `l`,
    /// installing the handlers it needs. Throws std::system_error if the
    /// system refuses a handler (`l` is then not added).
    void add(signal_listener& l, unsigned mask)
    {
        std::lock_guard lock(mutex_);
        l.selected = mask;
        listeners_.push_back(l);
        if (auto error = update_handlers_locked()) {
            listeners_.remove(l);
            (void)update_handlers_locked();
            throw std::system_error(error, "sigaction");
        }
    }

    /// Adds the events in `added` to what `l` selects and removes those in
    /// `removed`; returns the new selection. An event removed is never
    /// delivered to `l` once this returns. A handler the system refuses
    /// leaves its event undelivered (nothing to report it to here).
    unsigned change(signal_listener& l, unsigned added, unsigned removed) noexcept
    {
        std::lock_guard lock(mutex_);
        l.selected = (l.selected | added) & ~removed;
        (void)update_handlers_locked();
        return l.selected;
    }

    /// What `l` selects.
    [[nodiscard]] unsigned selected(const signal_listener& l) noexcept
    {
        std::lock_guard lock(mutex_);
        return l.selected;
    }

    /// Stops delivering to `l`: once this returns, `l.notify` is not running
    /// and will not run again. Idempotent.
    void remove(signal_listener& l) noexcept
    {
        std::lock_guard lock(mutex_);
        if (listeners_.contains(l)) listeners_.remove(l);
        (void)update_handlers_locked();
    }

    /// Notifies every listener that selects `event`; true if there was one.
    /// What the registry's thread does with a caught signal, and how tests
    /// raise an event without one. `grace` is Windows' (see shutdown_grace).
    bool dispatch(signal_event event, std::chrono::milliseconds /*grace*/) noexcept
    {
        const unsigned bit = signal_bit(event);
        std::lock_guard lock(mutex_);
        bool delivered = false;
        for (signal_listener* l = listeners_.front(); l != nullptr; l = l->hook.next) {
            if ((l->selected & bit) == 0) continue;
            l->notify(l, event);
            delivered = true;
        }
        return delivered;
    }

private:
    signal_registry()
    {
        if (::pipe2(pipe_.data(), O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2");
        // A handler must never block: if the pipe is full, signals are being
        // lost anyway (the reader is that far behind), and one more is too.
        ::fcntl(pipe_[1], F_SETFL, O_NONBLOCK);
        write_end() = pipe_[1];
        try {
            std::thread([this] { read_signals(); }).detach();
        } catch (...) {
            ::close(pipe_[0]);
            ::close(pipe_[1]);
            throw;
        }
    }

    /// The write end of the pipe, for the handler (a plain int it can read
    /// without a lock: set once, before any handler is installed).
    static int& write_end() noexcept
    {
        static int fd = -1;
        return fd;
    }

    static void on_signal(int number) noexcept
    {
        const int saved = errno; // the interrupted code may be about to read it
        const auto byte = static_cast<unsigned char>(number);
        (void)::write(write_end(), &byte, 1);
        errno = saved;
    }

    /// The registry's thread: every signal caught, delivered in order.
    void read_signals() noexcept
    {
        for (;;) {
            unsigned char byte = 0;
            const ssize_t n = ::read(pipe_[0], &byte, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n != 1) return;
            const std::optional<signal_event> event = to_signal_event(byte);
            if (!event || dispatch(*event, shutdown_grace)) continue;
            // Caught just as the last listener let go: do what the signal
            // would have done without portico.
            std::lock_guard lock(mutex_);
            const auto index = static_cast<std::size_t>(*event) - 1;
            if (!installed_[index]) (void)::kill(::getpid(), byte);
        }
    }

    /// Installs the handler of every event some listener selects and puts
    /// back the earlier disposition of every other one (mutex_ held).
    /// Returns the first refusal.
    std::error_code update_handlers_locked() noexcept
    {
        unsigned wanted = 0;
        for (const signal_listener* l = listeners_.front(); l != nullptr; l = l->hook.next) wanted |= l->selected;
        std::error_code error;
        for (std::size_t i = 0; i < caught_signals.size(); ++i) {
            const bool want = (wanted & signal_bit(static_cast<signal_event>(i + 1))) != 0;
            if (want == installed_[i]) continue;
            if (want) {
                struct sigaction action{};
                action.sa_handler = &signal_registry::on_signal;
                ::sigemptyset(&action.sa_mask);
                // System calls the signal interrupts go on where they can.
                action.sa_flags = SA_RESTART;
                if (::sigaction(caught_signals[i], &action, &previous_[i]) != 0) {
                    if (!error) error = std::error_code(errno, std::system_category());
                    continue;
                }
            } else {
                (void)::sigaction(caught_signals[i], &previous_[i], nullptr);
            }
            installed_[i] = want;
        }
        return error;
    }

    std::mutex mutex_;
    std::array<int, 2> pipe_{-1, -1};
    std::array<bool, 4> installed_{};
    std::array<struct sigaction, 4> previous_{};
    intrusive_list<signal_listener, &signal_listener::hook> listeners_;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
