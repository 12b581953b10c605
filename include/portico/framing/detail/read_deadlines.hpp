// portico: read_deadlines — the per-packet deadline and the idle timeout of a
// packet_stream: the times its reader publishes and its watchdog checks.
#pragma once

#include <portico/config.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/clock_ticks.hpp>
#include <portico/framing/stream_concepts.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <system_error>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The clock a packet_stream's limits read: its context's clock for a
/// timed_stream (a manual clock in tests), the steady clock otherwise.
template <class Stream>
struct stream_clock {
    using type = std::chrono::steady_clock;
};
template <class Stream>
    requires timed_stream<Stream>
struct stream_clock<Stream> {
    using type = typename std::remove_cvref_t<decltype(std::declval<Stream&>().context())>::clock;
};

/// The deadlines of a packet_stream's reads (see docs/design/framing.md):
/// the reader only publishes times, in atomics (when the current wait
/// began, when the packet in progress was first waited on, when the peer's
/// silence began); the stream's watchdog, a detached coroutine on another
/// thread, check()s them and sleeps until the next deadline. A few atomic
/// stores per read instead of a timer per read. The reader reads the clock
/// once per wait and passes it to these and to the heartbeat's hooks.
///
/// The packet's clock starts when a read first waits on a packet of which
/// part has arrived and runs until the packet is whole: bytes trickling in
/// do not extend it (slowloris). Idle time counts only while a read waits,
/// from the start of that wait; a receive that brought only heartbeat
/// packets (pings, pongs) does not restart it.
/// Thread safety: the reader's calls from one read_packet() at a time;
/// check() from any thread.
template <class Clock>
class read_deadlines {
public:
    using time_point = typename Clock::time_point;
    using duration = typename Clock::duration;

    /// What check() found: the error of a deadline that passed, or else
    /// when to check again.
    struct verdict {
        std::error_code expired;
        time_point next;
    };

    /// Deadlines for these timeouts (zero: none).
    read_deadlines(std::chrono::milliseconds packet_timeout, std::chrono::milliseconds idle_timeout) noexcept
        : enabled_(packet_timeout.count() > 0 || idle_timeout.count() > 0),
          packet_limit_(std::chrono::duration_cast<duration>(packet_timeout)),
          idle_limit_(std::chrono::duration_cast<duration>(idle_timeout))
    {
        step_ = packet_limit_.count() > 0 ? packet_limit_ : idle_limit_;
        if (idle_limit_.count() > 0 && idle_limit_ < step_) step_ = idle_limit_;
    }

    read_deadlines(const read_deadlines&) = delete;
    read_deadlines& operator=(const read_deadlines&) = delete;

    /// True if either timeout is set (the stream then needs a watchdog).
    [[nodiscard]] bool enabled() const noexcept { return enabled_; }

    /// Reader: a whole packet is in; the next packet's clock has not started.
    void packet_complete() noexcept
    {
        if (enabled_) packet_start_.store(never, std::memory_order_release);
    }

    /// Reader: a read is about to wait for the peer at `now`;
    /// `inside_packet` if part of the next packet is already in;
    /// `heartbeat_only` if everything received since the previous wait was
    /// pings and pongs (the idle time then goes on from that wait's start).
    void wait_begins(time_point now, bool inside_packet, bool heartbeat_only) noexcept
    {
        if (!enabled_) return;
        // NOTE: the packet's clock starts at its first wait and is not reset
        // by the bytes that trickle in afterwards.
        const auto t = times::of(now);
        if (inside_packet && packet_start_.load(std::memory_order_relaxed) == never) {
            packet_start_.store(t, std::memory_order_release);
        }
        if (!heartbeat_only || idle_start_.load(std::memory_order_relaxed) == never) {
            idle_start_.store(t, std::memory_order_release);
        }
        // NOTE: published last: a watchdog that sees the wait sees its starts.
        waiting_since_.store(t, std::memory_order_release);
    }

    /// Reader: the read returned.
    void wait_ends() noexcept
    {
        if (enabled_) waiting_since_.store(never, std::memory_order_release);
    }

    /// Watchdog: timed_out if the waiting read's packet is past its
    /// deadline, idle_timeout if the peer has been silent too long;
    /// otherwise the earliest deadline, or `now` plus the shortest timeout
    /// at the latest (a packet that starts meanwhile gets its full time: its
    /// deadline cannot come sooner).
    [[nodiscard]] verdict check(time_point now) const noexcept
    {
        verdict v{{}, now + step_};
        const std::int64_t since = waiting_since_.load(std::memory_order_acquire);
        if (since == never) return v;
        const std::int64_t started = packet_start_.load(std::memory_order_acquire);
        if (packet_limit_.count() > 0 && started != never) {
            const auto deadline = times::time_of(started) + packet_limit_;
            if (deadline <= now) return {make_error_code(errc::timed_out), now};
            if (deadline < v.next) v.next = deadline;
        }
        if (idle_limit_.count() > 0) {
            // Idle counts only while a read waits: a busy reader does not
            // make its peer idle.
            const std::int64_t idle = idle_start_.load(std::memory_order_acquire);
            const auto deadline = times::time_of(idle != never ? idle : since) + idle_limit_;
            if (deadline <= now) return {make_error_code(errc::idle_timeout), now};
            if (deadline < v.next) v.next = deadline;
        }
        return v;
    }

private:
    // Times are clock ticks in atomics; `never`: not set.
    using times = clock_ticks<Clock>;
    static constexpr std::int64_t never = times::never;

    const bool enabled_;
    const duration packet_limit_;
    const duration idle_limit_;
    duration step_;
    std::atomic<std::int64_t> waiting_since_{never};
    std::atomic<std::int64_t> packet_start_{never};
    // When the current silence began: the start of a wait (or of an earlier
    // one, across receives of heartbeat packets only).
    std::atomic<std::int64_t> idle_start_{never};
};

} // namespace detail

PORTICO_NAMESPACE_END
