#include <portico/stop_token.hpp>

#include "support/catch.hpp"

#include <atomic>
#include <memory>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

using portico::stop_callback;
using portico::stop_source;
using portico::stop_token;

TEST_CASE("stop_token reports requests and possibility", "[stop_token]")
{
    stop_token none;
    CHECK_FALSE(none.stop_possible());
    CHECK_FALSE(none.stop_requested());

    stop_source source;
    stop_token token = source.get_token();
    CHECK(token.stop_possible());
    CHECK_FALSE(token.stop_requested());
    CHECK(token == source.get_token());
    CHECK(token != stop_source{}.get_token());
    CHECK(source.request_stop());
    CHECK_FALSE(source.request_stop()); // only the first request counts
    CHECK(token.stop_requested());

    stop_token orphan = [] { return stop_source{}.get_token(); }();
    CHECK_FALSE(orphan.stop_possible()); // no source left, never requested
}

TEST_CASE("stop_callback runs once: on request, or at once if already requested", "[stop_token]")
{
    stop_source source;
    int calls = 0;
    {
        stop_callback cb(source.get_token(), [&]() noexcept { ++calls; });
        CHECK(calls == 0);
        source.request_stop();
        CHECK(calls == 1);
        source.request_stop();
        CHECK(calls == 1);
    }
    stop_callback late(source.get_token(), [&]() noexcept { ++calls; });
    CHECK(calls == 2);

    stop_source other;
    {
        stop_callback removed(other.get_token(), [&]() noexcept { ++calls; });
    }
    other.request_stop(); // deregistered: not called
    CHECK(calls == 2);
}

TEST_CASE("a callback may destroy its own stop_callback", "[stop_token]")
{
    stop_source source;
    std::optional<stop_callback<std::function<void()>>> self;
    int calls = 0;
    self.emplace(source.get_token(), std::function<void()>([&] {
                     ++calls;
                     self.reset();
                 }));
    source.request_stop();
    CHECK(calls == 1);
    CHECK_FALSE(self.has_value());
}

TEST_CASE("destroying a stop_callback waits for its callback running on another thread; "
          "10,000 races never hang or touch a dead callback",
          "[stop_token]")
{
    std::atomic<int> late{0};
    for (int round = 0; round < 10'000; ++round) {
        stop_source source;
        auto alive = std::make_shared<std::atomic<bool>>(true);
        // If the destructor did not wait for a running callback, the callback
        // could still be running after `alive` was cleared.
        auto check = [alive, &late] {
            std::this_thread::yield();
            if (!alive->load()) late.fetch_add(1);
        };
        auto cb =
            std::make_unique<stop_callback<std::function<void()>>>(source.get_token(), std::function<void()>(check));
        std::thread requester([&] { source.request_stop(); });
        cb.reset(); // races the callback; must wait if it is running
        alive->store(false);
        requester.join();
    }
    CHECK(late.load() == 0);
}

TEST_CASE("callbacks registered and destroyed on 4 threads while a fifth requests stop: none runs twice or after "
          "its destruction, one made after the request runs at once",
          "[stop_token]")
{
    // Contends for the state's lock from every side (on Linux a futex lock
    // of its own, elsewhere a mutex).
    // 50 rounds of 5 new threads: thread creation is slow under Wine.
    constexpr int rounds = 50, per_thread = 50, threads = 4;
    std::atomic<int> wrong{0};
    for (int round = 0; round < rounds; ++round) {
        stop_source source;
        std::vector<std::thread> workers;
        for (int t = 0; t < threads; ++t) {
            workers.emplace_back([&] {
                for (int i = 0; i < per_thread; ++i) {
                    int runs = 0;
                    bool destroyed = false;
                    const bool requested_before = source.stop_requested();
                    {
                        stop_callback cb(source.get_token(), [&] {
                            if (destroyed) wrong.fetch_add(1);
                            ++runs;
                        });
                    }
                    destroyed = true;
                    // Requested before the constructor: it ran there. Else
                    // it ran on the requester (and the destructor waited),
                    // or the destructor took it out before its turn.
                    if (requested_before && runs != 1) wrong.fetch_add(1);
                    if (runs > 1) wrong.fetch_add(1);
                }
            });
        }
        std::thread requester([&] { source.request_stop(); });
        requester.join();
        for (auto& w : workers) w.join();
    }
    CHECK(wrong.load() == 0);
}
