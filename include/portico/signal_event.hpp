// portico: signal_event — the requests from outside the program to
// interrupt or end it that a signal_set catches.
#pragma once

#include <portico/config.hpp>

PORTICO_NAMESPACE_BEGIN

/// A request from outside the program to interrupt or end it, as a
/// signal_set (portico/signal_set.hpp) catches it and wait() yields it.
///
/// Each value names the Windows console control event it stands for and the
/// POSIX signal a Linux backend will map to it:
///
/// | event     | Windows                                  | POSIX   |
/// |-----------|------------------------------------------|---------|
/// | interrupt | CTRL_C_EVENT (Ctrl+C)                    | SIGINT  |
/// | quit      | CTRL_BREAK_EVENT (Ctrl+Break)            | SIGQUIT |
/// | hangup    | CTRL_CLOSE_EVENT (the console closed)    | SIGHUP  |
/// | terminate | CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT   | SIGTERM |
///
/// After hangup and terminate, Windows ends the process soon whatever the
/// program does; signal_set says how the program gets its chance to shut
/// down first.
enum class signal_event : unsigned char {
    /// Ctrl+C in the console; SIGINT. Under Wine, a SIGINT sent to the
    /// process arrives as this event.
    interrupt = 1,
    /// Ctrl+Break in the console; SIGQUIT (Ctrl+\ in a terminal), the
    /// keyboard's other way to interrupt.
    quit,
    /// The console window was closed (its Close button, or End task in Task
    /// Manager); SIGHUP, the terminal went away.
    hangup,
    /// The user is logging off or the system is shutting down; SIGTERM.
    /// Windows sends it to services and to console programs that have
    /// loaded neither user32.dll nor gdi32.dll; other programs are simply
    /// ended.
    terminate,
};

PORTICO_NAMESPACE_END
