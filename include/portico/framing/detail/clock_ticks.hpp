// portico: clock_ticks — a clock's time points as plain integers, so that one
// thread can publish them in atomics and another read them.
#pragma once

#include <portico/config.hpp>

#include <cstdint>
#include <limits>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// Time points of `Clock` as its tick count (read_deadlines and
/// heartbeat_monitor keep them in std::atomic<std::int64_t>), with `never`
/// for "not set". Thread safety: pure functions.
template <class Clock>
struct clock_ticks {
    /// No time: nothing published yet, or cleared.
    static constexpr std::int64_t never = (std::numeric_limits<std::int64_t>::min)();

    /// `t` as ticks.
    static std::int64_t of(typename Clock::time_point t) noexcept
    {
        return static_cast<std::int64_t>(t.time_since_epoch().count());
    }
    /// The time point of `t` ticks.
    static typename Clock::time_point time_of(std::int64_t t) noexcept
    {
        return typename Clock::time_point(typename Clock::duration(t));
    }
};

} // namespace detail

PORTICO_NAMESPACE_END
