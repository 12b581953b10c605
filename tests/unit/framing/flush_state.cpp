#include <portico/framing/detail/flush_state.hpp>

#include "support/catch.hpp"

using portico::detail::flush_state;
using driver = flush_state::driver;

TEST_CASE("flush_state: a writer wakes a parked driver once; it parks when the queue is empty", "[flush_state]")
{
    flush_state f;
    CHECK(f.driver_state() == driver::parked);
    CHECK(f.write_queued()); // this writer resumes it
    CHECK(f.driver_state() == driver::running);
    CHECK_FALSE(f.write_queued()); // the next gather takes it
    auto copy = f.copy_queued();
    CHECK_FALSE(copy.driver);
    CHECK_FALSE(copy.kick);
    f.park();
    CHECK(f.driver_state() == driver::parked);
    CHECK_FALSE(f.kick_scheduled());
}

TEST_CASE("flush_state: copies make a parked driver owed and schedule one kick, which wakes it", "[flush_state]")
{
    flush_state f;
    auto first = f.copy_queued();
    CHECK(first.driver);
    CHECK(first.kick);
    CHECK(f.driver_state() == driver::owed);
    CHECK(f.kick_scheduled());
    // More copies, and a writer, before the kick runs: nothing more to do.
    auto second = f.copy_queued();
    CHECK_FALSE(second.driver);
    CHECK_FALSE(second.kick);
    CHECK_FALSE(f.write_queued());
    // The kicker runs: it takes the wake, resumes the driver, then ends.
    CHECK(f.take_wake());
    CHECK(f.driver_state() == driver::running);
    CHECK(f.end_kick());
    CHECK_FALSE(f.kick_scheduled());
    f.park();
    CHECK(f.driver_state() == driver::parked);
}

TEST_CASE("flush_state: a reader about to wait takes the owed wake; the kick then finds nothing", "[flush_state]")
{
    flush_state f;
    REQUIRE(f.copy_queued().kick);
    CHECK(f.take_wake()); // the reader resumes the driver
    CHECK_FALSE(f.take_wake());
    f.park();
    // The kicker runs later: no wake to take, and the kick ends.
    CHECK_FALSE(f.take_wake());
    CHECK(f.end_kick());
    CHECK_FALSE(f.kick_scheduled());
}

TEST_CASE("flush_state: a copy while a kick runs gets no second kick, and the kick takes its wake before it ends",
          "[flush_state]")
{
    flush_state f;
    REQUIRE(f.copy_queued().kick);
    REQUIRE(f.take_wake()); // a reader woke the driver
    f.park();               // and it wrote everything
    // The kicker has started (no wake to take) but has not suspended yet: a
    // copy now must not schedule a kick, which could resume the kicker on
    // another thread while it still runs.
    CHECK_FALSE(f.take_wake());
    auto copy = f.copy_queued();
    CHECK(copy.driver);
    CHECK_FALSE(copy.kick);
    CHECK(f.driver_state() == driver::owed);
    // The kicker, suspending, is refused: it goes round and takes the wake.
    CHECK_FALSE(f.end_kick());
    CHECK(f.kick_scheduled());
    CHECK(f.take_wake());
    CHECK(f.end_kick());
    CHECK_FALSE(f.kick_scheduled());
    // With the kick ended, the next copy schedules a new one.
    f.park();
    CHECK(f.copy_queued().kick);
}
