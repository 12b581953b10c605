// What every example's main needs and none of the examples is about: reading
// "--name value" options, and stopping on Ctrl+C.
#pragma once

#include <portico/detail/win/windows.hpp>

#include <functional>
#include <mutex>
#include <string_view>
#include <utility>

namespace example {

/// The word after `name` on the command line, or `fallback` if `name` is not
/// there (or is the last word).
inline const char* option(int argc, char** argv, std::string_view name, const char* fallback)
{
    for (int i = 1; i + 1 < argc; ++i) {
        if (argv[i] == name) return argv[i + 1];
    }
    return fallback;
}

/// While it lives, Ctrl+C, Ctrl+Break and closing the console window run
/// `action` instead of ending the process. Windows runs it on a thread of its
/// own, so it must be safe from any thread (io_context::stop() and
/// stop_source::request_stop() are). One at a time per program.
class ctrl_c_handler {
public:
    explicit ctrl_c_handler(std::function<void()> action)
    {
        {
            std::lock_guard lock(mutex());
            current() = std::move(action);
        }
        ::SetConsoleCtrlHandler(&on_event, TRUE);
    }
    ~ctrl_c_handler()
    {
        ::SetConsoleCtrlHandler(&on_event, FALSE);
        // NOTE: under the lock, so a handler already running finishes before
        // what its action refers to (the io_context) goes away.
        std::lock_guard lock(mutex());
        current() = nullptr;
    }
    ctrl_c_handler(const ctrl_c_handler&) = delete;
    ctrl_c_handler& operator=(const ctrl_c_handler&) = delete;

private:
    static BOOL WINAPI on_event(DWORD event)
    {
        if (event != CTRL_C_EVENT && event != CTRL_BREAK_EVENT && event != CTRL_CLOSE_EVENT) return FALSE;
        std::lock_guard lock(mutex());
        if (current()) current()();
        return TRUE;
    }
    static std::mutex& mutex()
    {
        static std::mutex m;
        return m;
    }
    static std::function<void()>& current()
    {
        static std::function<void()> action;
        return action;
    }
};

} // namespace example
