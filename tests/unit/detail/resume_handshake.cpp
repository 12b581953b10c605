#include <portico/detail/resume_handshake.hpp>

#include "support/catch.hpp"

#include <atomic>
#include <thread>

using portico::detail::resume_handshake;
using state = resume_handshake::state;

TEST_CASE("resume_handshake: suspending first hands the resumption to the completer", "[resume_handshake]")
{
    resume_handshake h;
    int cancels = 0;
    CHECK(h.suspend([&]() noexcept { ++cancels; }));
    CHECK(h.load() == state::running);
    CHECK(h.complete() == state::running); // the completer resumes
    CHECK(cancels == 0);
}

TEST_CASE("resume_handshake: completing first lets the starter continue inline", "[resume_handshake]")
{
    resume_handshake h;
    CHECK(h.complete() == state::idle);
    CHECK_FALSE(h.suspend());
    CHECK(h.load() == state::done);
}

TEST_CASE("resume_handshake: a stop before suspending is cancelled by the starter", "[resume_handshake]")
{
    resume_handshake h;
    CHECK_FALSE(h.request_cancel()); // marked: the starter will cancel
    CHECK(h.load() == state::cancel_pending);
    int cancels = 0;
    CHECK(h.suspend([&]() noexcept { ++cancels; }));
    CHECK(cancels == 1);
    CHECK(h.request_cancel()); // running: the canceller cancels itself
    CHECK(h.complete() == state::running);
    CHECK_FALSE(h.request_cancel()); // done: nothing to cancel
}

TEST_CASE("resume_handshake: a stop racing a completion before suspension", "[resume_handshake]")
{
    resume_handshake h;
    CHECK_FALSE(h.request_cancel());
    CHECK(h.complete() == state::cancel_pending); // the starter continues
    int cancels = 0;
    CHECK_FALSE(h.suspend([&]() noexcept { ++cancels; }));
    CHECK(cancels == 0); // nothing left to cancel
}

TEST_CASE("resume_handshake: an orphaned operation is freed by its completer", "[resume_handshake]")
{
    resume_handshake idle;
    CHECK_FALSE(idle.orphan()); // never started: nothing pending

    resume_handshake h;
    CHECK(h.suspend());
    CHECK(h.orphan());
    CHECK(h.complete() == state::orphaned);

    resume_handshake done;
    CHECK(done.suspend());
    CHECK(done.complete() == state::running);
    CHECK_FALSE(done.orphan()); // completed meanwhile: the caller's bug, reported
}

TEST_CASE("resume_handshake: complete_from acts only from the state it names", "[resume_handshake]")
{
    resume_handshake h;
    CHECK_FALSE(h.complete_from(state::running)); // idle: the starter still owns it
    CHECK(h.suspend());
    CHECK_FALSE(h.complete_from(state::idle)); // running: hand it to a packet instead
    CHECK(h.complete_from(state::running));
    CHECK(h.complete() == state::done); // a late completer sees it finished
    h.reset();
    CHECK(h.complete_from(state::idle)); // before the starter suspends
    CHECK_FALSE(h.suspend());            // so it continues inline
}

TEST_CASE("resume_handshake: starter and completer racing resume exactly once", "[resume_handshake]")
{
    for (int round = 0; round < 2000; ++round) {
        resume_handshake h;
        std::atomic<int> resumed{0};
        std::thread completer([&] {
            if (h.complete() == state::running) resumed.fetch_add(1);
        });
        if (!h.suspend()) resumed.fetch_add(1); // the starter continues inline
        completer.join();
        REQUIRE(resumed.load() == 1);
    }
}

TEST_CASE("resume_handshake: suspend_or_abandon ends the operation on an earlier stop", "[resume_handshake]")
{
    resume_handshake stopped_first;
    CHECK_FALSE(stopped_first.request_cancel());
    bool stopped = false;
    CHECK_FALSE(stopped_first.suspend_or_abandon(stopped));
    CHECK(stopped);
    CHECK(stopped_first.complete() == state::done); // the late answer is dropped

    resume_handshake answered_first;
    CHECK(answered_first.complete() == state::idle);
    stopped = false;
    CHECK_FALSE(answered_first.suspend_or_abandon(stopped));
    CHECK_FALSE(stopped);

    resume_handshake neither;
    CHECK(neither.suspend_or_abandon(stopped));
    CHECK(neither.load() == state::running);
}
