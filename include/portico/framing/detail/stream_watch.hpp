// portico: stream_watch — everything a packet_stream's watchdog keeps an eye
// on (the read deadlines and the heartbeat), behind the reader's two hooks
// and the watchdog's one check.
#pragma once

#include <portico/config.hpp>
#include <portico/framing/detail/heartbeat.hpp>
#include <portico/framing/detail/read_deadlines.hpp>
#include <portico/framing/packet_stream_options.hpp>

#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The read deadlines and the heartbeat of one packet_stream, on `Clock`:
/// the reader reads the clock once per wait and both learn of it; the
/// watchdog's check() merges their verdicts into one: stop with this error,
/// ping now, sleep until then. Sans I/O: the stream queues the ping and
/// sleeps. Thread safety: as read_deadlines and heartbeat_monitor.
template <class Clock>
class stream_watch {
public:
    using time_point = typename Clock::time_point;

    /// What check() found.
    struct verdict {
        /// The error of a deadline that passed, or heartbeat_timeout.
        std::error_code expired;
        /// A ping is due: the caller queues it (ping_sent() was called).
        bool ping_due = false;
        /// When to check again.
        time_point next;
    };

    /// The watch `o` asks for (nothing if it sets no timeout and no
    /// heartbeat).
    explicit stream_watch(const packet_stream_options& o) noexcept
        : deadlines(o.packet_timeout, o.idle_timeout), heartbeat(o.heartbeat)
    {}

    /// True if a timeout or the heartbeat is set: the stream needs a clock
    /// and a watchdog.
    [[nodiscard]] bool enabled() const noexcept { return deadlines.enabled() || heartbeat.enabled(); }

    /// Reader: a read is about to wait (see read_deadlines::wait_begins).
    void wait_begins(bool inside_packet, bool heartbeat_only) noexcept
    {
        if (!enabled()) return;
        const time_point now = Clock::now();
        deadlines.wait_begins(now, inside_packet, heartbeat_only);
        heartbeat.wait_begins(now);
    }

    /// Reader: the read returned, `received` if it brought bytes.
    void wait_ends(bool received) noexcept
    {
        deadlines.wait_ends();
        if (heartbeat.enabled()) heartbeat.wait_ends(Clock::now(), received);
    }

    /// Watchdog, once before its first check().
    void start(time_point now) noexcept { heartbeat.start(now); }

    /// Watchdog: the merged verdict at `now`. A ping it asks for is already
    /// counted as sent.
    [[nodiscard]] verdict check(time_point now) noexcept
    {
        verdict v{{}, false, (time_point::max)()};
        if (deadlines.enabled()) {
            const auto d = deadlines.check(now);
            if (d.expired) return {d.expired, false, now};
            v.next = d.next;
        }
        if (heartbeat.enabled()) {
            const auto h = heartbeat.check(now);
            if (h.expired) return {h.expired, false, now};
            if (h.ping_due) {
                // NOTE: before the ping is queued, so that its pong finds it
                // asked for however fast it comes back.
                heartbeat.ping_sent(now);
                v.ping_due = true;
            }
            if (h.next < v.next) v.next = h.next;
        }
        return v;
    }

    read_deadlines<Clock> deadlines;
    heartbeat_monitor<Clock> heartbeat;
};

} // namespace detail

PORTICO_NAMESPACE_END
