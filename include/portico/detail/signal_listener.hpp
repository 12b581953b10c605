// portico: what a backend's signal registry knows of one signal_set — the
// events it selects and where to deliver them.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/signal_event.hpp>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The bit of `event` in a selection mask.
constexpr unsigned signal_bit(signal_event event) noexcept { return 1u << static_cast<unsigned>(event); }

/// One entry of the process-wide signal registry (detail::backend::
/// signal_registry). The registry owns `selected` and the hook (both only
/// under its lock) and calls `notify` for every event the entry selects,
/// from whatever thread the system delivers it on; once the registry's
/// remove() returned, it never calls `notify` for the entry again.
struct signal_listener {
    /// Delivers one event; runs under the registry's lock, so it must be
    /// short and take no lock the registry's callers may hold.
    using notify_fn = void (*)(signal_listener* self, signal_event event) noexcept;

    explicit signal_listener(notify_fn fn) noexcept : notify(fn) {}
    signal_listener(const signal_listener&) = delete;
    signal_listener& operator=(const signal_listener&) = delete;

    notify_fn notify;
    /// signal_bit()s of the selected events.
    unsigned selected = 0;
    list_hook<signal_listener> hook;
};

} // namespace detail

PORTICO_NAMESPACE_END
