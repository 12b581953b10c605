#include <portico/coro/when_any.hpp>

#include <portico/coro/get_stop_token.hpp>
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
using portico::when_any;
using portico::test::thread_executor;
using portico::test::wait_for_stop;

TEST_CASE("when_any: the first to finish wins; losers are cancelled and joined", "[when_any]")
{
    const auto frames = portico::debug::live_frames();
    {
        thread_executor ex(4);
        std::atomic<int> losers_done{0};
        auto loser = [&]() -> task<std::string> {
            co_await ex.schedule();
            co_await wait_for_stop{};
            losers_done.fetch_add(1);
            co_return "loser";
        };
        auto winner = [&]() -> task<int> {
            co_await ex.schedule();
            co_return 7;
        };
        auto result = sync_wait(when_any(loser(), winner(), loser()));
        CHECK(result.index == 1);
        REQUIRE(result.value.index() == 1);
        CHECK(std::get<1>(result.value) == 7);
        // Joined before when_any returned: no loser is still running.
        CHECK(losers_done.load() == 2);
    }
    CHECK(portico::debug::live_frames() == frames);
}

TEST_CASE("when_any over a vector yields the winner's index and value", "[when_any]")
{
    thread_executor ex(2);
    std::vector<task<int>> children;
    for (int i = 0; i < 5; ++i) {
        children.push_back([](thread_executor& e, int id) -> task<int> {
            co_await e.schedule();
            if (id != 3) co_await wait_for_stop{};
            co_return id * 10;
        }(ex, i));
    }
    auto result = sync_wait(when_any(std::move(children)));
    CHECK(result.index == 3);
    CHECK(result.value == 30);

    CHECK_THROWS_AS(sync_wait(when_any(std::vector<task<int>>{})), std::invalid_argument);
}

TEST_CASE("when_any: a child finishing at once starts the rest already stopped", "[when_any]")
{
    bool later_saw_stop = false;
    auto immediate = []() -> task<int> { co_return 1; };
    auto later = [&]() -> task<int> {
        later_saw_stop = (co_await portico::get_stop_token()).stop_requested();
        co_return 2;
    };
    auto result = sync_wait(when_any(immediate(), later()));
    CHECK(result.index == 0);
    CHECK(later_saw_stop);
}

TEST_CASE("when_any rethrows the winner's exception", "[when_any]")
{
    thread_executor ex(2);
    auto fails = [&]() -> task<> {
        co_await ex.schedule();
        throw std::runtime_error("winner failed");
    };
    auto waits = [&]() -> task<> {
        co_await ex.schedule();
        co_await wait_for_stop{};
    };
    CHECK_THROWS_WITH(sync_wait(when_any(fails(), waits())), "winner failed");
}

TEST_CASE("when_any forwards the awaiter's stop request", "[when_any]")
{
    portico::stop_source source;
    source.request_stop();
    auto waits = []() -> task<int> {
        co_await wait_for_stop{};
        co_return 5;
    };
    auto result = sync_wait(when_any(waits(), waits()), source.get_token());
    CHECK(result.index == 0);
}
