#include <portico/coro/async_mutex.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>

#include "support/catch.hpp"
#include "support/thread_executor.hpp"

#include <vector>

using portico::async_mutex;
using portico::sync_wait;
using portico::task;
using portico::test::thread_executor;

TEST_CASE("async_mutex try_lock and unlock", "[async_mutex]")
{
    async_mutex m;
    CHECK(m.try_lock());
    CHECK_FALSE(m.try_lock());
    m.unlock();
    CHECK(m.try_lock());
    m.unlock();
}

TEST_CASE("async_mutex hands the lock to waiters in arrival order", "[async_mutex]")
{
    async_mutex m;
    std::vector<int> order;
    REQUIRE(m.try_lock());
    auto waiter = [](async_mutex& mutex, std::vector<int>& out, int id) -> task<> {
        auto guard = co_await mutex.scoped_lock();
        out.push_back(id);
    };
    // spawn() runs each waiter until it suspends on the held lock.
    portico::task_group group;
    group.spawn(waiter(m, order, 1));
    group.spawn(waiter(m, order, 2));
    group.spawn(waiter(m, order, 3));
    CHECK(order.empty());
    CHECK(group.size() == 3);
    // The lock passes 1 -> 2 -> 3, each resumed inline by the previous unlock.
    m.unlock();
    CHECK(order == std::vector<int>{1, 2, 3});
    sync_wait(group.join());
    CHECK(m.try_lock());
    m.unlock();
}

TEST_CASE("async_mutex serialises increments from many threads", "[async_mutex]")
{
    thread_executor ex(4);
    async_mutex m;
    long counter = 0; // deliberately not atomic: the mutex protects it
    auto worker = [&]() -> task<> {
        for (int i = 0; i < 5000; ++i) {
            co_await ex.schedule();
            auto guard = co_await m.scoped_lock();
            ++counter;
        }
    };
    sync_wait(portico::when_all(worker(), worker(), worker(), worker()));
    CHECK(counter == 20000);
    CHECK(m.try_lock());
    m.unlock();
}
