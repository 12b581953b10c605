#include <portico/net/resolver.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/loopback.hpp"

#include <atomic>
#include <chrono>
#include <string>
#if !PORTICO_BACKEND_IOCP
#include <netdb.h>

#include <condition_variable>
#include <mutex>
#endif

using namespace std::chrono_literals;
using portico::address;
using portico::address_v4;
using portico::address_v6;
using portico::endpoint;
using portico::errc;
using portico::resolve_family;
using portico::resolver;
using portico::task;

PORTICO_CO_TEST_CASE("resolve localhost: loopback endpoints with the service's port", "[resolver]")
{
    resolver r(ctx);
    auto [ec, endpoints] = co_await r.resolve("localhost", "8080");
    REQUIRE_FALSE(ec);
    REQUIRE_FALSE(endpoints.empty());
    for (const auto& e : endpoints) {
        CHECK(e.addr().is_loopback());
        CHECK(e.port() == 8080);
    }
    auto [ec4, only_v4] = co_await r.resolve("localhost", "80", resolve_family::v4);
    REQUIRE_FALSE(ec4);
    REQUIRE_FALSE(only_v4.empty());
    for (const auto& e : only_v4) CHECK(e.is_v4());
}

PORTICO_CO_TEST_CASE("literal addresses with a numeric port never touch DNS", "[resolver]")
{
    resolver r(ctx);
    auto op = r.resolve("127.0.0.1", "25000");
    CHECK(op.await_ready()); // complete before any lookup starts
    auto [ec, endpoints] = co_await std::move(op);
    REQUIRE_FALSE(ec);
    REQUIRE(endpoints.size() == 1);
    CHECK(endpoints[0] == endpoint{address_v4::loopback(), 25000});

    auto [ec6, v6] = co_await r.resolve("::1", "7");
    REQUIRE_FALSE(ec6);
    REQUIRE(v6.size() == 1);
    CHECK(v6[0] == endpoint{address_v6::loopback(), 7});

    auto [wrong, none] = co_await r.resolve("::1", "7", resolve_family::v4);
    CHECK(wrong == errc::host_not_found);
    auto [empty, nothing] = co_await r.resolve("", "80");
    CHECK(empty == errc::invalid_argument);
}

PORTICO_CO_TEST_CASE("an unknown name or service gives a clean error", "[resolver]")
{
    resolver r(ctx);
    // RFC 6761: names under .invalid never resolve.
    auto [ec, endpoints] = co_await r.resolve("no-such-host.invalid", "80");
    UNSCOPED_INFO("error: " << ec.message());
    CHECK(ec == errc::host_not_found);
    CHECK(endpoints.empty());
    auto [service_ec, none] = co_await r.resolve("localhost", "no-such-service-name");
    CHECK(service_ec == errc::service_not_found);
}

#if PORTICO_BACKEND_IOCP
namespace {

// A stand-in for GetAddrInfoExW that stays pending until told otherwise,
// so that cancellation is tested on a lookup that is really in flight (real
// lookups here answer at once). `answers_cancel` says whether
// GetAddrInfoExCancel calls the routine back, as Windows does, or does
// nothing, as a system that cannot cancel would.
struct pending_lookup {
    using routine_fn = void(CALLBACK*)(DWORD, DWORD, LPWSAOVERLAPPED);
    static inline std::atomic<LPOVERLAPPED> overlapped{nullptr};
    static inline routine_fn routine = nullptr;
    static inline bool answers_cancel = true;
    static inline std::atomic<int> cancels{0};

    static INT WSAAPI start(PCWSTR, PCWSTR, DWORD, LPGUID, const ADDRINFOEXW*, PADDRINFOEXW*, timeval*, LPOVERLAPPED o,
                            LPLOOKUPSERVICE_COMPLETION_ROUTINE r, LPHANDLE handle)
    {
        routine = reinterpret_cast<routine_fn>(r);
        *handle = reinterpret_cast<HANDLE>(1);
        overlapped = o;
        return WSA_IO_PENDING;
    }
    static INT WSAAPI cancel(LPHANDLE)
    {
        ++cancels;
        if (answers_cancel) routine(WSA_E_CANCELLED, 0, static_cast<LPWSAOVERLAPPED>(overlapped.exchange(nullptr)));
        return 0;
    }
};

/// Puts the stand-in in place for one test.
struct use_pending_lookup {
    portico::detail::win::lookup_functions saved = portico::detail::win::lookup_api();
    explicit use_pending_lookup(bool answers_cancel)
    {
        pending_lookup::overlapped = nullptr;
        pending_lookup::answers_cancel = answers_cancel;
        pending_lookup::cancels = 0;
        portico::detail::win::lookup_api() = {&pending_lookup::start, &pending_lookup::cancel};
    }
    ~use_pending_lookup() { portico::detail::win::lookup_api() = saved; }
};

} // namespace

PORTICO_CO_TEST_CASE("cancelling a pending resolve resumes it once, whether or not the system can cancel", "[resolver]")
{
    for (bool answers_cancel : {true, false}) {
        INFO((answers_cancel ? "the system calls back on cancel" : "the system cannot cancel"));
        use_pending_lookup fake(answers_cancel);
        resolver r(ctx);
        std::atomic<int> resumed{0};
        std::error_code result;
        portico::stop_source stop;
        auto body = [&]() -> task<> {
            auto [ec, endpoints] = co_await r.resolve("pending.example", "80");
            result = ec;
            ++resumed;
        };
        auto lookup = body();
        lookup.set_stop_token(stop.get_token());
        auto canceller = [&]() -> task<> {
            // Once the lookup is in flight, stop it: whether the op has
            // suspended yet or is still starting, it must resume once.
            while (pending_lookup::overlapped.load() == nullptr) co_await ctx.schedule();
            stop.request_stop();
        };
        co_await portico::when_all(std::move(lookup), canceller());
        CHECK(resumed.load() == 1);
        CHECK(result == errc::operation_aborted);
        CHECK(pending_lookup::cancels.load() == 1);
        if (!answers_cancel) {
            // The system answers much later: dropped, not a second resumption.
            pending_lookup::routine(0, 0, static_cast<LPWSAOVERLAPPED>(pending_lookup::overlapped.exchange(nullptr)));
            co_await ctx.sleep_for(20ms);
            CHECK(resumed.load() == 1);
        }
    }
}

#else
namespace {

// A stand-in for getaddrinfo that blocks its lookup thread until released,
// so that cancellation is tested on a lookup really in flight. Nothing can
// interrupt getaddrinfo: a stopped lookup is abandoned, and the answer that
// comes later must be dropped.
struct pending_lookup {
    static inline std::mutex mutex;
    static inline std::condition_variable changed;
    static inline bool started = false;
    static inline bool released = false;
    static inline bool answered = false;

    static int start(const char*, const char*, const addrinfo*, addrinfo** out)
    {
        std::unique_lock lock(mutex);
        started = true;
        changed.notify_all();
        changed.wait(lock, [] { return released; });
        *out = nullptr;
        answered = true;
        changed.notify_all();
        return EAI_NONAME;
    }
    static bool has_started()
    {
        std::lock_guard lock(mutex);
        return started;
    }
    static void release_and_wait()
    {
        std::unique_lock lock(mutex);
        released = true;
        changed.notify_all();
        changed.wait(lock, [] { return answered; });
    }
};

/// Puts the stand-in in place for one test.
struct use_pending_lookup {
    portico::detail::uring::lookup_functions saved = portico::detail::uring::lookup_api();
    use_pending_lookup()
    {
        pending_lookup::started = pending_lookup::released = pending_lookup::answered = false;
        portico::detail::uring::lookup_api() = {&pending_lookup::start};
    }
    ~use_pending_lookup() { portico::detail::uring::lookup_api() = saved; }
};

} // namespace

PORTICO_CO_TEST_CASE("cancelling a pending resolve resumes it once; the answer that comes later is dropped",
                     "[resolver]")
{
    use_pending_lookup fake;
    resolver r(ctx);
    std::atomic<int> resumed{0};
    std::error_code result;
    portico::stop_source stop;
    auto body = [&]() -> task<> {
        auto [ec, endpoints] = co_await r.resolve("pending.example", "80");
        result = ec;
        ++resumed;
    };
    auto lookup = body();
    lookup.set_stop_token(stop.get_token());
    auto canceller = [&]() -> task<> {
        // Once the lookup is in flight, stop it: whether the op has
        // suspended yet or is still starting, it must resume once.
        while (!pending_lookup::has_started()) co_await ctx.schedule();
        stop.request_stop();
    };
    co_await portico::when_all(std::move(lookup), canceller());
    CHECK(resumed.load() == 1);
    CHECK(result == errc::operation_aborted);
    // The lookup thread answers much later: dropped, not a second resumption.
    pending_lookup::release_and_wait();
    co_await ctx.sleep_for(20ms);
    CHECK(resumed.load() == 1);
}
#endif

PORTICO_CO_TEST_CASE("a real lookup cancelled at once resumes once", "[resolver]")
{
    resolver r(ctx);
    std::atomic<int> resumed{0};
    std::error_code result;
    portico::stop_source stop;
    auto body = [&]() -> task<> {
        auto [ec, endpoints] = co_await r.resolve("cancel-me.invalid", "80");
        result = ec;
        ++resumed;
    };
    auto lookup = body();
    lookup.set_stop_token(stop.get_token());
    auto canceller = [&]() -> task<> {
        stop.request_stop();
        co_return;
    };
    co_await portico::when_all(std::move(lookup), canceller());
    co_await ctx.sleep_for(100ms); // a second resumption would show up here
    CHECK(resumed.load() == 1);
    // Either the cancel or the (fast) answer came first.
    CHECK((result == errc::operation_aborted || result == errc::host_not_found));
}

PORTICO_IO_TEST_CASE("tcp_socket::connect by name tries each resolved endpoint until one accepts", "[resolver]")
{
    portico::test::raw_listener listener; // 127.0.0.1 only: "localhost" may list ::1 first, refused fast
    const auto port = std::to_string(listener.local().port());
    portico::tcp_socket s(ctx);
    auto [ec, connected] = co_await s.connect("localhost", port);
    REQUIRE_FALSE(ec);
    CHECK(connected == listener.local());
    CHECK(s.remote_endpoint().value() == listener.local());

    portico::tcp_socket unknown(ctx);
    auto [name_ec, none] = co_await unknown.connect("no-such-host.invalid", port);
    CHECK(name_ec == errc::host_not_found);
    CHECK_FALSE(unknown.is_open());

    portico::tcp_socket refused(ctx);
    const auto closed_port = std::to_string(listener.local().port() == 1 ? 2 : 1);
    auto [refused_ec, nowhere] = co_await refused.connect("localhost", closed_port);
    CHECK(refused_ec == errc::connection_refused);
}
