// portico: rate_limit — a packet_stream's packets-per-second limit.
#pragma once

#include <portico/config.hpp>

#include <chrono>
#include <cstdint>
#include <optional>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// A generic cell rate algorithm on `Clock`: a packet may arrive at most
/// `per_second - 1` intervals ahead of the steady rate, so a burst of up to
/// `per_second` packets passes and a sustained rate above it does not.
/// Integer arithmetic, no timer, no allocation.
/// Thread safety: none (the one reader).
template <class Clock>
class rate_limit {
public:
    /// At most `per_second` packets per second; zero: no limit.
    explicit rate_limit(std::uint32_t per_second) noexcept : limit_(per_second) {}

    /// True if there is a limit to check.
    [[nodiscard]] bool enabled() const noexcept { return limit_ != 0; }

    /// One packet received at `now`: false if it goes over the limit.
    [[nodiscard]] bool admit(typename Clock::time_point now) noexcept
    {
        if (limit_ == 0) return true;
        using duration = typename Clock::duration;
        const auto interval = std::chrono::duration_cast<duration>(std::chrono::seconds(1)) / limit_;
        const auto tolerance = interval * (limit_ - 1);
        auto expected = expected_ && !(*expected_ < now) ? *expected_ : now;
        if (expected - now > tolerance) return false;
        expected_ = expected + interval;
        return true;
    }

private:
    std::uint32_t limit_;
    // When the next packet is due at the steady rate (none before the first).
    std::optional<typename Clock::time_point> expected_;
};

} // namespace detail

PORTICO_NAMESPACE_END
