#include <portico/coro/task.hpp>
#include <portico/stop_token.hpp>

#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/sync_wait.hpp>

#include "support/catch.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using portico::sync_wait;
using portico::task;

namespace {

task<int> answer() { co_return 42; }

task<int> depth(int n)
{
    if (n == 0) co_return 0;
    co_return 1 + co_await depth(n - 1);
}

task<> thrower()
{
    throw std::runtime_error("boom");
    co_return;
}

task<int> rethrow_through(int levels)
{
    if (levels == 0) {
        co_await thrower();
        co_return 0;
    }
    co_return co_await rethrow_through(levels - 1);
}

} // namespace

TEST_CASE("task is lazy: nothing runs until it is awaited", "[task]")
{
    bool started = false;
    auto t = [](bool& flag) -> task<int> {
        flag = true;
        co_return 1;
    }(started);
    CHECK_FALSE(started);
    CHECK_FALSE(t.done());
    CHECK(sync_wait(std::move(t)) == 1);
    CHECK(started);
}

TEST_CASE("task returns values, move-only values, references and void", "[task]")
{
    CHECK(sync_wait(answer()) == 42);

    auto p = sync_wait([]() -> task<std::unique_ptr<std::string>> { co_return std::make_unique<std::string>("hi"); }());
    REQUIRE(p);
    CHECK(*p == "hi");

    int x = 5;
    int& r = sync_wait([](int& v) -> task<int&> { co_return v; }(x));
    CHECK(&r == &x);

    int calls = 0;
    sync_wait([](int& c) -> task<> {
        ++c;
        co_return;
    }(calls));
    CHECK(calls == 1);

    // Awaiting an lvalue task works too.
    auto composed = []() -> task<int> {
        auto t = answer();
        co_return co_await t + 1;
    };
    CHECK(sync_wait(composed()) == 43);
}

TEST_CASE("a million nested awaits complete without growing the stack", "[task]")
{
    const auto frames = portico::debug::live_frames();
    CHECK(sync_wait(depth(1'000'000)) == 1'000'000);
    CHECK(portico::debug::live_frames() == frames);
}

TEST_CASE("exceptions cross awaits and reach the awaiter", "[task]")
{
    const auto frames = portico::debug::live_frames();
    CHECK_THROWS_WITH(sync_wait(rethrow_through(10)), "boom");

    // Caught in the middle, the coroutine continues normally.
    auto caught = []() -> task<std::string> {
        try {
            co_await rethrow_through(3);
        } catch (const std::runtime_error& e) {
            co_return std::string("caught ") + e.what();
        }
        co_return "not caught";
    };
    CHECK(sync_wait(caught()) == "caught boom");
    CHECK(portico::debug::live_frames() == frames);
}

TEST_CASE("a task destroyed without being awaited frees its frame", "[task]")
{
    // The tasks live in a vector, so the compiler cannot elide their frames
    // onto the stack (which Clang does for a task that never escapes).
    const auto frames = portico::debug::live_frames();
    {
        std::vector<task<int>> tasks;
        tasks.push_back(answer());
        tasks.push_back(answer());
        CHECK(portico::debug::live_frames() == frames + 2);
        task<int> moved = std::move(tasks[0]);
        CHECK_FALSE(tasks[0].valid());
        CHECK(moved.valid());
        moved = std::move(tasks[1]); // the first frame is freed by the assignment
        CHECK(portico::debug::live_frames() == frames + 1);
    }
    CHECK(portico::debug::live_frames() == frames);
}

TEST_CASE("a task inherits its awaiter's stop token unless one was set", "[task]")
{
    portico::stop_source outer;
    portico::stop_source own;

    auto child = []() -> task<portico::stop_token> { co_return co_await portico::get_stop_token(); };
    auto parent = [&]() -> task<> {
        auto inherited = co_await child();
        CHECK(inherited == outer.get_token());

        auto explicit_child = child();
        explicit_child.set_stop_token(own.get_token());
        auto kept = co_await std::move(explicit_child);
        CHECK(kept == own.get_token());
    };
    sync_wait(parent(), outer.get_token());
}
