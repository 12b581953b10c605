#include <portico/coro/sync_wait.hpp>

#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/task.hpp>

#include "support/catch.hpp"
#include "support/thread_executor.hpp"

#include <stdexcept>
#include <thread>

using portico::sync_wait;
using portico::task;

TEST_CASE("sync_wait returns the result of a plain awaiter", "[sync_wait]")
{
    struct ready {
        bool await_ready() const noexcept { return true; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        int await_resume() const noexcept { return 7; }
    };
    CHECK(sync_wait(ready{}) == 7);
}

TEST_CASE("sync_wait blocks until work finishing on another thread is done", "[sync_wait]")
{
    portico::test::thread_executor ex(2);
    const auto caller = std::this_thread::get_id();
    auto work = [&]() -> task<std::thread::id> {
        co_await ex.schedule();
        co_return std::this_thread::get_id();
    };
    const auto ran_on = sync_wait(work());
    CHECK(ran_on != caller);
}

TEST_CASE("sync_wait rethrows and passes its stop token on", "[sync_wait]")
{
    CHECK_THROWS_AS(sync_wait([]() -> task<> {
                        throw std::logic_error("x");
                        co_return;
                    }()),
                    std::logic_error);

    portico::stop_source source;
    source.request_stop();
    auto stopped = sync_wait([]() -> task<bool> { co_return (co_await portico::get_stop_token()).stop_requested(); }(),
                             source.get_token());
    CHECK(stopped);
}
