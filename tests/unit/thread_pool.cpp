#include <portico/thread_pool.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/io_context.hpp>

#include "support/catch.hpp"

#include <mutex>
#include <set>
#include <thread>

using portico::io_context;
using portico::task;
using portico::thread_pool;

TEST_CASE("thread_pool runs the context on its threads and joins after stop", "[thread_pool]")
{
    io_context ctx;
    std::set<std::thread::id> seen;
    {
        thread_pool pool(ctx, 3);
        CHECK(pool.size() == 3);
        portico::sync_wait([](io_context& c, std::set<std::thread::id>& ids) -> task<> {
            for (int i = 0; i < 300; ++i) {
                co_await c.schedule();
                ids.insert(std::this_thread::get_id());
            }
        }(ctx, seen));
        ctx.stop();
        pool.join();
        pool.join(); // idempotent
    }
    CHECK(!seen.empty());
    CHECK(seen.size() <= 3);
    CHECK(seen.count(std::this_thread::get_id()) == 0);
}
