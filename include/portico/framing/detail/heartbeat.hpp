// portico: heartbeat_monitor — a packet_stream's heartbeat, sans I/O: the
// times its reader publishes, and what its watchdog decides from them (ping
// now, the peer is gone, or look again later).
#pragma once

#include <portico/config.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/clock_ticks.hpp>
#include <portico/framing/heartbeat_options.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The heartbeat of one packet_stream (docs/design/heartbeat.md), on
/// `Clock`. As read_deadlines, it only keeps times: the reader publishes
/// when a read waits and what it received, the watchdog (the stream's one
/// detached coroutine for every deadline) calls check() and sends the ping
/// it asks for. No timer per ping and no clock read on the write path.
///
/// The timeout counts time spent waiting in read_packet() since the last
/// sign of life (bytes of any packet, or a solicited pong with pong_only),
/// summed over the waits: a reader busy elsewhere does not make its peer
/// dead, and with pong_only a steady flow of other packets does not hide
/// that no pong came. A ping is due when nothing was received for an
/// interval (any_packet), or every interval (pong_only).
///
/// Thread safety: the reader's calls from one read_packet() at a time;
/// start(), check() and ping_sent() from the watchdog, one at a time.
template <class Clock>
class heartbeat_monitor {
public:
    using time_point = typename Clock::time_point;
    using duration = typename Clock::duration;

    /// What check() found: heartbeat_timeout if the peer is presumed gone;
    /// otherwise whether a ping is due now, and when to look again.
    struct verdict {
        std::error_code expired;
        bool ping_due = false;
        time_point next;
    };

    /// What a received packet is to the heartbeat.
    enum class kind : unsigned char { other, ping, pong };

    /// The heartbeat `o` describes (checked by heartbeat_problem).
    explicit heartbeat_monitor(const heartbeat_options& o) noexcept
        : enabled_(o.enabled()), answer_(o.answer_pings), pong_only_(o.proof == proof_of_life::pong_only),
          ping_type_(o.ping_type), pong_type_(o.pong_type), interval_(std::chrono::duration_cast<duration>(o.interval)),
          timeout_(std::chrono::duration_cast<duration>(o.timeout)), pong_gap_(shortest_pong_gap(interval_))
    {}

    /// The least time between two pongs: 100 ms, or half the interval if
    /// that is shorter. Not the peer's interval (unknown, and its own to
    /// choose): a peer that pings every 100 ms or slower has every ping
    /// answered, a flood gets at most ten pongs a second.
    [[nodiscard]] static constexpr duration shortest_pong_gap(duration interval) noexcept
    {
        const auto cap = std::chrono::duration_cast<duration>(std::chrono::milliseconds(100));
        return interval / 2 < cap ? interval / 2 : cap;
    }

    heartbeat_monitor(const heartbeat_monitor&) = delete;
    heartbeat_monitor& operator=(const heartbeat_monitor&) = delete;

    /// True if the heartbeat runs.
    [[nodiscard]] bool enabled() const noexcept { return enabled_; }
    /// True if the stream answers pings itself (and so consumes them).
    [[nodiscard]] bool answers_pings() const noexcept { return answer_; }

    /// What a packet of `type` is (other when the heartbeat is off).
    [[nodiscard]] kind classify(std::uint32_t type) const noexcept
    {
        if (!enabled_) return kind::other;
        if (type == ping_type_) return kind::ping;
        return type == pong_type_ ? kind::pong : kind::other;
    }

    /// Watchdog, once before its first check(): the heartbeat's clocks start.
    void start(time_point now) noexcept { start_ = times::of(now); }

    /// Watchdog: the verdict at `now`.
    [[nodiscard]] verdict check(time_point now) const noexcept
    {
        // RACE: the reader ends a wait by clearing waiting_since_ and then
        // adding the wait to waited_; read in the other order, a wait is at
        // worst missed once (late), never counted twice (early).
        const std::int64_t waited = waited_.load(std::memory_order_acquire);
        const std::int64_t since = waiting_since_.load(std::memory_order_acquire);
        duration silent{waited};
        if (since != never && times::time_of(since) < now) silent += now - times::time_of(since);
        if (since != never && silent >= timeout_) return {make_error_code(errc::heartbeat_timeout), false, now};
        // Not waiting and already past the timeout: the reader was busy; the
        // verdict waits for its next wait (within an interval).
        verdict v{{}, false, now + (silent < timeout_ ? timeout_ - silent : interval_)};
        const time_point due = next_ping();
        if (due <= now) {
            v.ping_due = true;
            if (now + interval_ < v.next) v.next = now + interval_;
        } else if (due < v.next) {
            v.next = due;
        }
        return v;
    }

    /// Watchdog: a ping is about to be queued at `now` (before, so that a
    /// pong to it, however fast, finds it asked for).
    void ping_sent(time_point now) noexcept
    {
        last_ping_sent_ = times::of(now);
        outstanding_.store(true, std::memory_order_release);
    }

    /// Reader: a read is about to wait for the peer.
    void wait_begins(time_point now) noexcept
    {
        if (enabled_) waiting_since_.store(times::of(now), std::memory_order_release);
    }

    /// Reader: the read returned at `now`, `received` if it brought bytes.
    void wait_ends(time_point now, bool received) noexcept
    {
        if (!enabled_) return;
        const std::int64_t since = waiting_since_.load(std::memory_order_relaxed);
        const std::int64_t t = times::of(now);
        // NOTE: cleared before waited_ grows (see check()).
        waiting_since_.store(never, std::memory_order_release);
        if (received) {
            last_receive_.store(t, std::memory_order_release);
            if (!pong_only_) {
                waited_.store(0, std::memory_order_release);
                return;
            }
        }
        if (since != never && t > since) {
            waited_.store(waited_.load(std::memory_order_relaxed) + (t - since), std::memory_order_release);
        }
    }

    /// Reader: a pong arrived. With pong_only it is the sign of life if a
    /// ping of ours is unanswered; a pong nobody asked for is ignored.
    void pong_received() noexcept
    {
        if (pong_only_ && outstanding_.exchange(false, std::memory_order_acq_rel)) {
            waited_.store(0, std::memory_order_release);
        }
    }

    /// Reader: a ping arrived (with answers_pings()). True if a pong is to
    /// be queued: at most one per shortest_pong_gap(), however fast pings
    /// come; the pings in between are answered by that pong.
    [[nodiscard]] bool ping_received() noexcept
    {
        // The time of the read that brought it: one clock read per read.
        const std::int64_t arrived = last_receive_.load(std::memory_order_relaxed);
        last_ping_received_.store(arrived, std::memory_order_release);
        if (last_pong_ != never && arrived - last_pong_ < pong_gap_.count()) return false;
        last_pong_ = arrived;
        return true;
    }

private:
    // Times are clock ticks; `never`: not set.
    using times = clock_ticks<Clock>;
    static constexpr std::int64_t never = times::never;

    /// When the next ping is due. With any_packet, an interval after the
    /// last of: the start, anything received, our last ping. A ping from the
    /// peer holds ours off for half an interval more: the peer is already
    /// asking, and our pong answers it and proves us at once; without this,
    /// two streams heartbeating each other would each ping every interval.
    [[nodiscard]] time_point next_ping() const noexcept
    {
        std::int64_t base = start_;
        if (last_ping_sent_ != never && last_ping_sent_ > base) base = last_ping_sent_;
        if (pong_only_) return times::time_of(base) + interval_;
        const std::int64_t received = last_receive_.load(std::memory_order_acquire);
        if (received != never && received > base) base = received;
        time_point due = times::time_of(base) + interval_;
        const std::int64_t asked = last_ping_received_.load(std::memory_order_acquire);
        if (answer_ && asked != never && times::time_of(asked) + interval_ + interval_ / 2 > due) {
            due = times::time_of(asked) + interval_ + interval_ / 2;
        }
        return due;
    }

    const bool enabled_;
    const bool answer_;
    const bool pong_only_;
    const std::uint32_t ping_type_;
    const std::uint32_t pong_type_;
    const duration interval_;
    const duration timeout_;
    const duration pong_gap_;
    // The watchdog's (start_ is set before it runs).
    std::int64_t start_ = never;
    std::int64_t last_ping_sent_ = never;
    // The reader's alone.
    std::int64_t last_pong_ = never;
    // Published by the reader, read by the watchdog.
    std::atomic<std::int64_t> waiting_since_{never};
    std::atomic<std::int64_t> waited_{0};
    std::atomic<std::int64_t> last_receive_{never};
    std::atomic<std::int64_t> last_ping_received_{never};
    // Published by the watchdog, taken by the reader.
    std::atomic<bool> outstanding_{false};
};

} // namespace detail

PORTICO_NAMESPACE_END
