#include <portico/signal_set.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/deadline.hpp>
#include <portico/stop_token.hpp>
#include <portico/thread_pool.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"

#if PORTICO_BACKEND_IOCP
#include <portico/detail/win/windows.hpp>
#else
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#endif

#include <atomic>
#include <chrono>
#include <initializer_list>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using portico::errc;
using portico::io_context;
using portico::io_result;
using portico::signal_event;
using portico::signal_set;
using portico::task;

// Events are raised through the hook the system's handler itself calls
// (signal_registry::dispatch): under Wine, GenerateConsoleCtrlEvent fails
// for a process without a console window, and SIGINT reaches the process
// only from outside (the examples' interrupt tests do that end to end). On
// Linux, tests at the end also send the process real signals.

namespace {

using registry = portico::detail::backend::signal_registry;

/// What raising an event did: whether a set took it (so Windows would not
/// end the process), on which thread it was raised, and how long the
/// raising thread was held.
struct raised {
    bool handled = false;
    std::thread::id thread;
    std::chrono::steady_clock::duration held{};
};

/// Raises `event` the way Windows does, on a thread of its own, and waits
/// for that thread to return.
raised raise_signal(signal_event event, std::chrono::milliseconds grace = 10s)
{
    raised r;
    std::thread system([&] {
        r.thread = std::this_thread::get_id();
        const auto start = std::chrono::steady_clock::now();
        r.handled = registry::instance().dispatch(event, grace);
        r.held = std::chrono::steady_clock::now() - start;
    });
    system.join();
    return r;
}

/// Raises `event` after `limit` unless dismissed first (by its end): a
/// bound that turns a hang into a failed check. (A Win32 event on Windows:
/// the Microsoft STL's timed wait needs an export Wine's msvcp140 lacks.)
#if PORTICO_BACKEND_IOCP
class raise_after {
public:
    raise_after(signal_event event, std::chrono::milliseconds limit)
        : dismissed_(::CreateEventW(nullptr, TRUE, FALSE, nullptr)), thread_([this, event, limit] {
              if (::WaitForSingleObject(dismissed_, static_cast<DWORD>(limit.count())) == WAIT_TIMEOUT) {
                  (void)registry::instance().dispatch(event, 0ms);
              }
          })
    {}
    raise_after(const raise_after&) = delete;
    raise_after& operator=(const raise_after&) = delete;
    ~raise_after()
    {
        ::SetEvent(dismissed_);
        thread_.join();
        ::CloseHandle(dismissed_);
    }

private:
    HANDLE dismissed_;
    std::thread thread_;
};
#else
class raise_after {
public:
    raise_after(signal_event event, std::chrono::milliseconds limit)
        : thread_([this, event, limit] {
              std::unique_lock lock(mutex_);
              if (!changed_.wait_for(lock, limit, [this] { return dismissed_; })) {
                  lock.unlock();
                  (void)registry::instance().dispatch(event, 0ms);
              }
          })
    {}
    raise_after(const raise_after&) = delete;
    raise_after& operator=(const raise_after&) = delete;
    ~raise_after()
    {
        {
            std::lock_guard lock(mutex_);
            dismissed_ = true;
        }
        changed_.notify_one();
        thread_.join();
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool dismissed_ = false;
    std::thread thread_; // last: it reads the members above
};
#endif

/// The next event of `signals`, or timed_out after 10 s: a test whose event
/// never comes fails instead of hanging.
task<io_result<signal_event>> next_event(io_context& ctx, signal_set& signals)
{
    co_return co_await portico::with_timeout(ctx, 10s, signals.wait());
}

/// What a wait yielded, and where the coroutine was when it resumed.
struct woken {
    io_result<signal_event> result;
    std::thread::id thread;
    bool on_pool = false;
};

task<woken> wait_for(io_context& ctx, signal_set& signals)
{
    auto result = co_await next_event(ctx, signals);
    co_return woken{result, std::this_thread::get_id(), ctx.running_in_this_thread()};
}

task<raised> raise_in_task(signal_event event) { co_return raise_signal(event); }

} // namespace

PORTICO_CO_TEST_CASE("an event reaches a pending wait, which resumes on a pool thread", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt});
    // The wait starts first and suspends (nothing is remembered); then the
    // event is raised on a thread of its own, as Windows does.
    auto [got, r] = co_await portico::when_all(wait_for(ctx, signals), raise_in_task(signal_event::interrupt));
    CHECK(r.handled);
    CHECK_FALSE(got.result.error());
    CHECK(got.result.value_unchecked() == signal_event::interrupt);
    CHECK(got.on_pool);
    CHECK(got.thread != r.thread);
}

PORTICO_CO_TEST_CASE("an event raised while nobody waits is remembered for the next wait", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt, signal_event::quit});
    CHECK(raise_signal(signal_event::quit).handled);
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::quit);
}

PORTICO_CO_TEST_CASE("remembered events are all delivered, one per wait, interrupt first", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt, signal_event::quit});
    CHECK(raise_signal(signal_event::quit).handled);
    CHECK(raise_signal(signal_event::interrupt).handled);
    CHECK(raise_signal(signal_event::interrupt).handled);
    auto [ec1, first] = co_await next_event(ctx, signals);
    auto [ec2, second] = co_await next_event(ctx, signals);
    auto [ec3, third] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec1);
    CHECK_FALSE(ec2);
    CHECK_FALSE(ec3);
    CHECK(first == signal_event::interrupt);
    CHECK(second == signal_event::interrupt);
    CHECK(third == signal_event::quit);
    // Nothing is left: the next wait times out.
    auto [late, none] = co_await portico::with_timeout(ctx, 30ms, signals.wait());
    CHECK(late == errc::timed_out);
}

PORTICO_CO_TEST_CASE("every set that selects an event gets it", "[signal_set]")
{
    signal_set a(ctx, {signal_event::interrupt});
    signal_set b(ctx, {signal_event::interrupt, signal_event::hangup});
    // Both waiting when it comes.
    auto [got_a, got_b, r] =
        co_await portico::when_all(wait_for(ctx, a), wait_for(ctx, b), raise_in_task(signal_event::interrupt));
    CHECK(r.handled);
    CHECK(got_a.result.value_unchecked() == signal_event::interrupt);
    CHECK(got_b.result.value_unchecked() == signal_event::interrupt);
    CHECK_FALSE(got_a.result.error());
    CHECK_FALSE(got_b.result.error());
    // Neither waiting: both remember it.
    CHECK(raise_signal(signal_event::interrupt).handled);
    auto [ec_a, event_a] = co_await next_event(ctx, a);
    auto [ec_b, event_b] = co_await next_event(ctx, b);
    CHECK_FALSE(ec_a);
    CHECK_FALSE(ec_b);
    CHECK(event_a == signal_event::interrupt);
    CHECK(event_b == signal_event::interrupt);
}

PORTICO_CO_TEST_CASE("an event a set does not select is not delivered to it", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt});
    CHECK(signals.contains(signal_event::interrupt));
    CHECK_FALSE(signals.contains(signal_event::quit));
    // Nobody selects quit: not handled, so Windows' default would end the process.
    CHECK_FALSE(raise_signal(signal_event::quit).handled);
    auto [ec, none] = co_await portico::with_timeout(ctx, 30ms, signals.wait());
    CHECK(ec == errc::timed_out);
    // Not remembered either: the next wait gets the next selected event.
    CHECK(raise_signal(signal_event::interrupt).handled);
    auto [ec2, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec2);
    CHECK(event == signal_event::interrupt);
}

PORTICO_CO_TEST_CASE("add and remove change the selection; remove forgets remembered events", "[signal_set]")
{
    signal_set signals(ctx);
    CHECK_FALSE(signals.contains(signal_event::quit));
    CHECK_FALSE(raise_signal(signal_event::quit).handled);
    signals.add(signal_event::quit);
    signals.add(signal_event::interrupt);
    CHECK(signals.contains(signal_event::quit));
    CHECK(raise_signal(signal_event::quit).handled);
    CHECK(raise_signal(signal_event::interrupt).handled);
    signals.remove(signal_event::interrupt);
    CHECK_FALSE(signals.contains(signal_event::interrupt));
    CHECK_FALSE(raise_signal(signal_event::interrupt).handled);
    // The interrupt remembered before remove() is gone; quit is still there.
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::quit);
    auto [late, none] = co_await portico::with_timeout(ctx, 30ms, signals.wait());
    CHECK(late == errc::timed_out);
}

PORTICO_CO_TEST_CASE("a stop request cancels a pending wait; a later event goes to the next wait", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt});
    portico::stop_source stop;
    auto waiting = wait_for(ctx, signals);
    waiting.set_stop_token(stop.get_token());
    auto stopper = [](portico::stop_source& s) -> task<> {
        s.request_stop();
        co_return;
    };
    auto [got, ignored] = co_await portico::when_all(std::move(waiting), stopper(stop));
    CHECK(got.result.error() == errc::operation_aborted);
    CHECK(got.result.error() == std::errc::operation_canceled);
    CHECK(got.on_pool);
    // The cancelled wait took nothing: the next event goes to the next wait.
    CHECK(raise_signal(signal_event::interrupt).handled);
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::interrupt);
}

PORTICO_CO_TEST_CASE("a wait whose stop was requested before it began ends at once, taking nothing", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt});
    CHECK(raise_signal(signal_event::interrupt).handled);
    portico::stop_source stop;
    stop.request_stop();
    auto stopped = wait_for(ctx, signals);
    stopped.set_stop_token(stop.get_token());
    auto got = co_await std::move(stopped);
    CHECK(got.result.error() == errc::operation_aborted);
    // The remembered event is still there.
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::interrupt);
}

PORTICO_CO_TEST_CASE("cancel() aborts the pending waits only", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt});
    auto canceller = [](signal_set& s) -> task<> {
        s.cancel();
        co_return;
    };
    auto [first, second, ignored] =
        co_await portico::when_all(wait_for(ctx, signals), wait_for(ctx, signals), canceller(signals));
    CHECK(first.result.error() == errc::operation_aborted);
    CHECK(second.result.error() == errc::operation_aborted);
    // Later waits work, and an event remembered before cancel() survives it.
    CHECK(raise_signal(signal_event::interrupt).handled);
    signals.cancel();
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::interrupt);
}

PORTICO_CO_TEST_CASE("stop requests, cancel() and an event racing: each wait resumes once", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt});
    constexpr int waiters = 8;
    for (int round = 0; round < 50; ++round) {
        std::vector<portico::stop_source> stops(waiters);
        std::vector<task<woken>> waits;
        for (auto& stop : stops) {
            waits.push_back(wait_for(ctx, signals));
            waits.back().set_stop_token(stop.get_token());
        }
        // Every wait is queued before the racers start (when_all starts
        // them in order, each up to its first suspension).
        auto racers = [](std::vector<portico::stop_source>& s, signal_set& set) -> task<> {
            std::thread stopper([&] {
                for (auto& stop : s) stop.request_stop();
            });
            std::thread canceller([&] { set.cancel(); });
            std::thread system([] { (void)registry::instance().dispatch(signal_event::interrupt, 0ms); });
            stopper.join();
            canceller.join();
            system.join();
            co_return;
        };
        auto [results, ignored] =
            co_await portico::when_all(portico::when_all(std::move(waits)), racers(stops, signals));
        int delivered = 0;
        for (const woken& w : results) {
            if (!w.result.error()) {
                ++delivered;
                CHECK(w.result.value_unchecked() == signal_event::interrupt);
            } else {
                CHECK(w.result.error() == errc::operation_aborted);
            }
        }
        // The one event went to one wait, or, if every wait had ended
        // first, is remembered: taken here, so rounds do not mix.
        CHECK(delivered <= 1);
        if (delivered == 0) {
            auto [ec, event] = co_await next_event(ctx, signals);
            CHECK_FALSE(ec);
            CHECK(event == signal_event::interrupt);
        }
    }
}

PORTICO_CO_TEST_CASE("destroying a set aborts its pending waits and stops catching its events", "[signal_set]")
{
    std::optional<signal_set> signals(std::in_place, ctx, std::initializer_list<signal_event>{signal_event::interrupt});
    auto destroyer = [](std::optional<signal_set>& s) -> task<> {
        s.reset();
        co_return;
    };
    auto [got, ignored] = co_await portico::when_all(wait_for(ctx, *signals), destroyer(signals));
    CHECK(got.result.error() == errc::operation_aborted);
    CHECK(got.on_pool);
    // Nothing selects interrupt any more: default handling would apply.
    CHECK_FALSE(raise_signal(signal_event::interrupt).handled);
}

PORTICO_CO_TEST_CASE("a set destroyed with no wait pending unregisters; other sets are unaffected", "[signal_set]")
{
    signal_set kept(ctx, {signal_event::quit});
    {
        signal_set gone(ctx, {signal_event::interrupt, signal_event::quit});
        CHECK(raise_signal(signal_event::interrupt).handled);
    }
    // A later event finds nobody for interrupt (no crash, not handled) ...
    CHECK_FALSE(raise_signal(signal_event::interrupt).handled);
    // ... and the surviving set still gets quit.
    CHECK(raise_signal(signal_event::quit).handled);
    auto [ec, event] = co_await next_event(ctx, kept);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::quit);
}

PORTICO_CO_TEST_CASE("a moved-from set waits with bad_state; the moved-to set catches", "[signal_set]")
{
    signal_set first(ctx, {signal_event::interrupt});
    signal_set second(std::move(first));
    auto [moved_ec, ignored] = co_await first.wait();
    CHECK(moved_ec == errc::bad_state);
    CHECK_FALSE(first.contains(signal_event::interrupt));
    CHECK(second.contains(signal_event::interrupt));
    CHECK(raise_signal(signal_event::interrupt).handled);
    auto [ec, event] = co_await next_event(ctx, second);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::interrupt);
    // Move assignment ends the target's own selection.
    signal_set third(ctx, {signal_event::quit});
    third = std::move(second);
    CHECK_FALSE(raise_signal(signal_event::quit).handled);
    CHECK(third.contains(signal_event::interrupt));
}

PORTICO_CO_TEST_CASE("stopping the context aborts pending and later waits; events are still caught", "[signal_set]")
{
    // A context of its own, stopped while a wait is pending on it.
    io_context inner;
    std::optional<io_result<signal_event>> seen;
    signal_set signals(inner, {signal_event::interrupt});
    {
        portico::thread_pool pool(inner, 1);
        // Started through its handle, it runs to its wait here, and it
        // observes no stop token (it is not spawned): only the context's
        // stop can end it, and it must, or the drain below never ends.
        task<> waiting = [](signal_set& s, std::optional<io_result<signal_event>>& out) -> task<> {
            out = co_await s.wait();
        }(signals, seen);
        waiting.handle().resume();
        // If stop() did not end the wait, an interrupt does after 10 s, and
        // the check below fails instead of the drain hanging.
        const raise_after bound(signal_event::interrupt, 10s);
        inner.stop();
        pool.join();
    }
    REQUIRE(seen);
    CHECK(seen->error() == errc::operation_aborted);
    CHECK(inner.outstanding_work() == 0);
    // Still selected: the process is not ended by it ...
    CHECK(raise_signal(signal_event::interrupt).handled);
    // ... but nothing can wait for it on a stopped context.
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK(ec == errc::operation_aborted);
}

#if PORTICO_BACKEND_IOCP
// Windows ends the process when the console handler returns after hangup
// or terminate, so the handler holds it for the program; Linux leaves the
// process to the program, and nothing is held there.
PORTICO_CO_TEST_CASE("after hangup, the handler holds the process until the set is gone", "[signal_set]")
{
    std::optional<signal_set> signals(std::in_place, ctx, std::initializer_list<signal_event>{signal_event::hangup});
    std::atomic<bool> returned{false};
    raised r;
    std::thread system([&] {
        const auto start = std::chrono::steady_clock::now();
        r.handled = registry::instance().dispatch(signal_event::hangup, 10s);
        r.held = std::chrono::steady_clock::now() - start;
        returned = true;
    });
    auto [ec, event] = co_await next_event(ctx, *signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::hangup);
    // The set selecting hangup exists: the handler cannot have returned
    // (unless the 10 s bound passed, which the duration check below catches).
    CHECK_FALSE(returned);
    signals.reset();
    system.join();
    CHECK(r.handled);
    CHECK(r.held < 5s);
}

PORTICO_CO_TEST_CASE("after terminate, removing the event lets the handler go", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::terminate, signal_event::interrupt});
    std::atomic<bool> returned{false};
    raised r;
    std::thread system([&] {
        const auto start = std::chrono::steady_clock::now();
        r.handled = registry::instance().dispatch(signal_event::terminate, 10s);
        r.held = std::chrono::steady_clock::now() - start;
        returned = true;
    });
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::terminate);
    CHECK_FALSE(returned);
    signals.remove(signal_event::terminate);
    system.join();
    CHECK(r.handled);
    CHECK(r.held < 5s);
    CHECK(signals.contains(signal_event::interrupt));
}

PORTICO_CO_TEST_CASE("the handler's hold after hangup is bounded", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::hangup});
    const raised r = raise_signal(signal_event::hangup, 100ms);
    CHECK(r.handled);
    CHECK(r.held >= 100ms);
    CHECK(r.held < 5s);
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::hangup);
}
#else
namespace {

/// The disposition of `number` now: portico's handler, or what was there
/// before it.
bool handler_installed(int number)
{
    struct sigaction now{};
    ::sigaction(number, nullptr, &now);
    return now.sa_handler != SIG_DFL && now.sa_handler != SIG_IGN;
}

} // namespace

PORTICO_CO_TEST_CASE("a real SIGINT and SIGTERM sent to the process reach the sets that select them", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt, signal_event::terminate});
    REQUIRE(::kill(::getpid(), SIGTERM) == 0);
    auto [ec, event] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec);
    CHECK(event == signal_event::terminate);
    REQUIRE(::kill(::getpid(), SIGINT) == 0);
    auto [ec2, event2] = co_await next_event(ctx, signals);
    CHECK_FALSE(ec2);
    CHECK(event2 == signal_event::interrupt);
}

PORTICO_CO_TEST_CASE("a signal's handler is there only while some set selects its event", "[signal_set]")
{
    REQUIRE_FALSE(handler_installed(SIGHUP));
    {
        signal_set signals(ctx, {signal_event::hangup});
        CHECK(handler_installed(SIGHUP));
        CHECK_FALSE(handler_installed(SIGQUIT));
        signals.add(signal_event::quit);
        CHECK(handler_installed(SIGQUIT));
        signals.remove(signal_event::quit);
        CHECK_FALSE(handler_installed(SIGQUIT));
    }
    // Gone with the set: SIGHUP does again what it did before (end the
    // process), as if portico had never caught it.
    CHECK_FALSE(handler_installed(SIGHUP));
    co_return;
}
#endif

PORTICO_CO_TEST_CASE("destroying a task suspended in wait(): no crash, no leak", "[signal_set]")
{
    auto waiter = [](signal_set& s, std::atomic<int>& r) -> task<> {
        (void)co_await s.wait();
        ++r;
    };
    std::atomic<int> resumed{0};
    for (int round = 0; round < 20; ++round) {
        signal_set signals(ctx, {signal_event::interrupt});
        // Started the way a custom scheduler would, through the handle.
        task<> queued = waiter(signals, resumed);
        queued.handle().resume();
        // Still in the waiter list: destroying it unlinks it, nothing is in
        // flight, and its work count is returned (the drain would hang).
        queued = {};
        if (threads == 1) {
            // An event takes the waiter from the list and posts its
            // resumption; with one pool thread (this one) the packet cannot
            // be dequeued before the frame is destroyed, so it arrives for a
            // dead frame, which must have been kept for it.
            task<> posted = waiter(signals, resumed);
            posted.handle().resume();
            CHECK(raise_signal(signal_event::interrupt).handled);
            posted = {};
        }
        co_await ctx.schedule(); // lets the posted packet arrive
    }
    CHECK(resumed == 0);
}

PORTICO_CO_TEST_CASE("a wait under with_timeout gets the event or times out", "[signal_set]")
{
    signal_set signals(ctx, {signal_event::interrupt});
    auto [timed_out, none] = co_await portico::with_timeout(ctx, 20ms, signals.wait());
    CHECK(timed_out == errc::timed_out);
    auto [got, r] = co_await portico::when_all(portico::with_timeout(ctx, 10s, signals.wait()),
                                               raise_in_task(signal_event::interrupt));
    CHECK(r.handled);
    CHECK_FALSE(got.error());
    CHECK(got.value_unchecked() == signal_event::interrupt);
}
