#include <portico/coro/when_all.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>

#include "support/catch.hpp"
#include "support/thread_executor.hpp"

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

using portico::sync_wait;
using portico::task;
using portico::when_all;
using portico::test::thread_executor;
using portico::test::wait_for_stop;

TEST_CASE("when_all yields every result in argument order", "[when_all]")
{
    auto [a, b, c] =
        sync_wait(when_all([]() -> task<int> { co_return 1; }(), []() -> task<std::string> { co_return "two"; }(),
                           []() -> task<> { co_return; }()));
    CHECK(a == 1);
    CHECK(b == "two");
    CHECK(c == std::monostate{});
}

TEST_CASE("when_all runs its awaitables concurrently on other threads", "[when_all]")
{
    const auto frames = portico::debug::live_frames();
    {
        thread_executor ex(4);
        std::atomic<int> running{0};
        std::atomic<int> peak{0};
        auto child = [&](int i) -> task<int> {
            co_await ex.schedule();
            const int now = running.fetch_add(1) + 1;
            int seen = peak.load();
            while (seen < now && !peak.compare_exchange_weak(seen, now)) {
            }
            running.fetch_sub(1);
            co_return i* i;
        };
        std::vector<task<int>> children;
        for (int i = 0; i < 200; ++i) children.push_back(child(i));
        auto results = sync_wait(when_all(std::move(children)));
        REQUIRE(results.size() == 200);
        for (int i = 0; i < 200; ++i) CHECK(results[static_cast<std::size_t>(i)] == i * i);
        CHECK(peak.load() >= 1);
    }
    CHECK(portico::debug::live_frames() == frames);
}

TEST_CASE("when_all rethrows the first failure after cancelling and joining the others", "[when_all]")
{
    thread_executor ex(2);
    std::atomic<bool> sibling_finished{false};
    auto waits = [&]() -> task<int> {
        co_await ex.schedule();
        co_await wait_for_stop{};
        sibling_finished = true;
        co_return 1;
    };
    auto fails = [&]() -> task<int> {
        co_await ex.schedule();
        throw std::runtime_error("first");
    };
    CHECK_THROWS_WITH(sync_wait(when_all(waits(), fails())), "first");
    CHECK(sibling_finished.load());
}

TEST_CASE("when_all forwards the awaiter's stop request to every child", "[when_all]")
{
    portico::stop_source source;
    thread_executor ex(2);
    auto waits = [&]() -> task<> {
        co_await ex.schedule();
        co_await wait_for_stop{};
    };
    auto stopper = [&]() -> task<> {
        co_await ex.schedule();
        source.request_stop();
    };
    // Completes only because the outer stop reaches both waiters.
    sync_wait(when_all(waits(), waits(), stopper()), source.get_token());
    CHECK(source.stop_requested());
}
