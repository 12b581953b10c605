// portico: flush_state — who wakes a packet_stream's write driver, and when:
// the write side's flush protocol, in one state table.
#pragma once

#include <portico/config.hpp>

#include <cassert>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The flush protocol of a packet_stream's write side. Two long-lived
/// coroutines belong to the stream: the *driver*, which writes the queue and
/// parks when it is empty, and the *kicker*, which wakes the driver late for
/// queue_packet(): deferred to the end of the completion handler that copied
/// the packet, so that the handler's whole burst of copies leaves in one
/// write. This class holds their state; the stream's mutex (the one that
/// guards the send queue) is held around every call, and each call says what
/// its caller does once the mutex is released. It resumes nothing itself.
///
///   driver   kick       event: who (mutex held)                -> driver  kick       then, after the mutex
///   parked   any        write_queued(): a writer's packet      -> running            it resumes the driver
///   parked   idle       copy_queued(): queue_packet's copy     -> owed    scheduled  it defers the kicker
///   parked   scheduled  copy_queued()                          -> owed               the kick on its way wakes it
///   owed     any        write_queued(), copy_queued()          (unchanged)           the owed wake takes it too
///   running  any        write_queued(), copy_queued()          (unchanged)           the next gather takes it
///   owed     scheduled  take_wake(): a reader about to wait,   -> running            it resumes the driver
///                       or the kicker
///   running  any        park(): the driver, queue empty        -> parked             the driver stays suspended
///   not owed scheduled  end_kick(): the suspended kicker       ->         idle       the kicker stays suspended
///   owed     scheduled  end_kick()                             (refused)             the kicker goes round again
///
/// References: the driver holds one on the stream's state from the moment it
/// leaves `parked` until park(), and each kick holds one from `scheduled` to
/// `idle`, so the state outlives both coroutines' runs; whoever takes a
/// transition out of `parked` or `idle` takes that reference, and the
/// coroutine drops it after park() or end_kick().
///
/// Why the driver is never resumed twice at once: only the caller that moves
/// it to `running` (from `parked` or `owed`) resumes it, and it leaves
/// `running` only by park(), which the driver calls itself from the awaiter
/// that suspends it, after it is suspended.
///
/// Why the kicker is never resumed on two threads: a kick is scheduled only
/// from `idle`, and `scheduled` lasts until end_kick(), which the kicker
/// calls from the awaiter that suspends it, after it is suspended. (A kick
/// posted from a thread outside the pool may run on any pool thread at once:
/// it must find the kicker suspended.)
///
/// Why no wake is lost: a packet queued while the driver runs is taken by its
/// next gather, since park() is called only when the queue, checked under the
/// same mutex, has nothing unsent. A packet queued while it is parked wakes
/// it, at once (a writer) or by making it `owed` (a copy). `owed` implies
/// `scheduled`, because copy_queued() makes both true and end_kick() refuses
/// while the driver is owed; so an owed wake is taken by the kick on its way,
/// if a reader did not take it first.
class flush_state {
public:
    /// Where the driver is.
    enum class driver : unsigned char {
        /// Suspended with nothing to write, holding no reference.
        parked,
        /// Suspended, but copies are queued: the kicker (or a reader about to
        /// wait) wakes it.
        owed,
        /// Running, or suspended in a write: it gathers the queue again
        /// before it parks.
        running,
    };

    /// What copy_queued() asks of its caller.
    struct copy_wake {
        /// The driver left `parked`: take its reference.
        bool driver = false;
        /// A kick was scheduled: take its reference and defer the kicker.
        bool kick = false;
    };

    /// A writer queued a packet. True: the driver was parked, and the caller
    /// takes its reference and resumes it.
    [[nodiscard]] bool write_queued() noexcept
    {
        if (driver_ != driver::parked) return false;
        driver_ = driver::running;
        return true;
    }

    /// queue_packet() copied a packet into the queue: a parked driver
    /// becomes owed, and a kick is scheduled unless one is on its way.
    [[nodiscard]] copy_wake copy_queued() noexcept
    {
        if (driver_ != driver::parked) return {};
        driver_ = driver::owed;
        const bool kick = !kick_scheduled_;
        kick_scheduled_ = true;
        return {true, kick};
    }

    /// A reader about to wait for the peer, or the kicker: takes the owed
    /// wake. True: the caller resumes the driver.
    [[nodiscard]] bool take_wake() noexcept
    {
        if (driver_ != driver::owed) return false;
        assert(kick_scheduled_ && "an owed wake always has a kick on its way");
        driver_ = driver::running;
        return true;
    }

    /// The driver, suspended, found nothing unsent: it parks.
    void park() noexcept
    {
        assert(driver_ == driver::running);
        driver_ = driver::parked;
    }

    /// The kicker, suspended: its kick ends, unless the driver became owed
    /// while it ran (false: it goes round again and takes that wake).
    [[nodiscard]] bool end_kick() noexcept
    {
        assert(kick_scheduled_);
        if (driver_ == driver::owed) return false;
        kick_scheduled_ = false;
        return true;
    }

    /// The driver's state, for tests.
    [[nodiscard]] driver driver_state() const noexcept { return driver_; }
    /// True while a kick is on its way or running, for tests.
    [[nodiscard]] bool kick_scheduled() const noexcept { return kick_scheduled_; }

private:
    driver driver_ = driver::parked;
    bool kick_scheduled_ = false;
};

} // namespace detail

PORTICO_NAMESPACE_END
