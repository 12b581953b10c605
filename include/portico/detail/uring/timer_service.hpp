// portico: the timer service on Linux — the shared timer heap and thread
// (detail/timer_service.hpp) sleeping on a timerfd.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/timer_service.hpp>
#include <portico/detail/uring/operation.hpp>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// How the timer thread sleeps on Linux: a timerfd on the monotonic clock
/// (steady_clock's) for the earliest deadline, and an eventfd to wake it.
class timerfd_alarm {
public:
    timerfd_alarm()
    {
        timer_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (timer_ < 0) throw std::system_error(errno, std::system_category(), "timerfd_create");
        wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_ < 0) {
            const int error = errno;
            ::close(timer_);
            throw std::system_error(error, std::system_category(), "eventfd");
        }
    }

    timerfd_alarm(const timerfd_alarm&) = delete;
    timerfd_alarm& operator=(const timerfd_alarm&) = delete;

    ~timerfd_alarm()
    {
        ::close(wake_);
        ::close(timer_);
    }

    /// Sets the timerfd to expire after `due` (at least 1 ns: zero would
    /// disarm it).
    void arm(std::chrono::steady_clock::duration due) noexcept
    {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(due).count();
        if (ns < 1) ns = 1;
        itimerspec when{};
        when.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        when.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        (void)::timerfd_settime(timer_, 0, &when, nullptr);
    }

    void wake() noexcept
    {
        const std::uint64_t one = 1;
        (void)!::write(wake_, &one, sizeof one);
    }

    void wait(bool retry) noexcept
    {
        pollfd fds[2] = {{wake_, POLLIN, 0}, {timer_, POLLIN, 0}};
        if (::poll(fds, 2, retry ? 1 : -1) <= 0) return;
        // Both are non-blocking: reading clears what woke us (a count of
        // wakes, or of expirations), never waits.
        std::uint64_t count = 0;
        if ((fds[0].revents & POLLIN) != 0) (void)!::read(wake_, &count, sizeof count);
        if ((fds[1].revents & POLLIN) != 0) (void)!::read(timer_, &count, sizeof count);
    }

private:
    int timer_ = -1;
    int wake_ = -1;
};

/// A timer operation the ring's scheduler completes (detail/timer_service.hpp).
using timer_op = basic_timer_op<operation>;
/// Owns the pending timers of one io_context: the same heap and thread as on
/// Windows (docs/design/timers.md).
using timer_service = basic_timer_service<operation, timerfd_alarm>;

} // namespace detail::uring

PORTICO_NAMESPACE_END
