#include <portico/coro/task_group.hpp>

#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>

#include "support/catch.hpp"
#include "support/thread_executor.hpp"

#include <atomic>
#include <stdexcept>

using portico::sync_wait;
using portico::task;
using portico::task_group;
using portico::test::thread_executor;
using portico::test::wait_for_stop;

TEST_CASE("task_group joins everything spawned into it", "[task_group]")
{
    const auto frames = portico::debug::live_frames();
    {
        thread_executor ex(4);
        task_group group;
        std::atomic<int> done{0};
        auto body = [&]() -> task<> {
            for (int i = 0; i < 1000; ++i) {
                group.spawn([](thread_executor& e, std::atomic<int>& d) -> task<> {
                    co_await e.schedule();
                    d.fetch_add(1);
                }(ex, done));
            }
            co_await group.join();
            CHECK(done.load() == 1000);
            CHECK(group.size() == 0);
            // The group can be used again after a join.
            group.spawn([](thread_executor& e, std::atomic<int>& d) -> task<> {
                co_await e.schedule();
                d.fetch_add(1);
            }(ex, done));
            co_await group.join();
        };
        sync_wait(body());
        CHECK(done.load() == 1001);
    }
    CHECK(portico::debug::live_frames() == frames);
}

TEST_CASE("task_group join with nothing spawned does not suspend", "[task_group]")
{
    task_group group;
    sync_wait([](task_group& g) -> task<> { co_await g.join(); }(group));
    CHECK(group.size() == 0);
}

TEST_CASE("task_group rethrows the first exception from join and runs the rest", "[task_group]")
{
    thread_executor ex(2);
    task_group group;
    std::atomic<int> finished{0};
    auto body = [&]() -> task<> {
        group.spawn([](thread_executor& e) -> task<> {
            co_await e.schedule();
            throw std::runtime_error("spawned failure");
        }(ex));
        for (int i = 0; i < 10; ++i) {
            group.spawn([](thread_executor& e, std::atomic<int>& f) -> task<> {
                co_await e.schedule();
                f.fetch_add(1);
            }(ex, finished));
        }
        co_await group.join();
    };
    CHECK_THROWS_WITH(sync_wait(body()), "spawned failure");
    CHECK(finished.load() == 10);
}

TEST_CASE("task_group request_stop reaches spawned work", "[task_group]")
{
    thread_executor ex(2);
    task_group group;
    std::atomic<int> stopped{0};
    auto body = [&]() -> task<> {
        for (int i = 0; i < 8; ++i) {
            group.spawn([](thread_executor& e, std::atomic<int>& s) -> task<> {
                co_await e.schedule();
                co_await wait_for_stop{};
                s.fetch_add(1);
            }(ex, stopped));
        }
        group.request_stop();
        co_await group.join();
    };
    sync_wait(body());
    CHECK(stopped.load() == 8);
    CHECK(group.get_token().stop_requested());
}
