// portico: the timer service on Windows — the shared timer heap and thread
// (detail/timer_service.hpp) sleeping on a waitable timer.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/timer_service.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/windows.hpp>

#include <chrono>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// How the timer thread sleeps on Windows: a waitable timer for the earliest
/// deadline and an event to wake it.
class waitable_alarm {
public:
    waitable_alarm()
    {
        wake_ = ::CreateEventW(nullptr, FALSE, FALSE, nullptr);
        if (wake_ == nullptr)
            throw std::system_error(static_cast<int>(::GetLastError()), std::system_category(), "CreateEventW");
        // A high-resolution timer where the system has one (Windows 10 1803+);
        // otherwise the classic one, with the system timer's granularity.
        constexpr DWORD high_resolution = 0x00000002; // CREATE_WAITABLE_TIMER_HIGH_RESOLUTION
        timer_ = ::CreateWaitableTimerExW(nullptr, nullptr, high_resolution, TIMER_ALL_ACCESS);
        if (timer_ == nullptr) timer_ = ::CreateWaitableTimerExW(nullptr, nullptr, 0, TIMER_ALL_ACCESS);
        if (timer_ == nullptr) {
            const auto error = static_cast<int>(::GetLastError());
            ::CloseHandle(wake_);
            throw std::system_error(error, std::system_category(), "CreateWaitableTimerExW");
        }
    }

    waitable_alarm(const waitable_alarm&) = delete;
    waitable_alarm& operator=(const waitable_alarm&) = delete;

    ~waitable_alarm()
    {
        ::CloseHandle(timer_);
        ::CloseHandle(wake_);
    }

    /// Sets the waitable timer to fire after `due`.
    void arm(std::chrono::steady_clock::duration due) noexcept
    {
        // Relative due times are negative, in 100 ns units; round up so the
        // timer never fires before the deadline.
        const auto ticks = (std::chrono::duration_cast<std::chrono::nanoseconds>(due).count() + 99) / 100;
        LARGE_INTEGER when;
        when.QuadPart = -(ticks > 0 ? ticks : 1);
        ::SetWaitableTimer(timer_, &when, 0, nullptr, nullptr, FALSE);
    }

    void wake() noexcept { ::SetEvent(wake_); }

    void wait(bool retry) noexcept
    {
        const HANDLE handles[2] = {wake_, timer_};
        ::WaitForMultipleObjects(2, handles, FALSE, retry ? 1 : INFINITE);
    }

private:
    HANDLE wake_ = nullptr;
    HANDLE timer_ = nullptr;
};

/// A timer operation the completion port completes (detail/timer_service.hpp).
using timer_op = basic_timer_op<overlapped_op>;
/// Owns the pending timers of one io_context. See docs/design/timers.md for
/// why a heap and a dedicated thread rather than GQCS time-outs or a wheel.
using timer_service = basic_timer_service<overlapped_op, waitable_alarm>;

} // namespace detail::win

PORTICO_NAMESPACE_END
