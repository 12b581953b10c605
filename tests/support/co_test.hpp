// PORTICO_CO_TEST_CASE: runs a coroutine test body on a fresh io_context with
// 1 and with 4 pool threads, then checks that the context drained and that no
// coroutine frame or process handle leaked.
#pragma once

#include <portico/io_context.hpp>
#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/backend.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/thread_pool.hpp>
#if PORTICO_BACKEND_IOCP
#include <portico/detail/win/windows.hpp>
#else
#include <filesystem>
#include <system_error>
#endif

#include "support/catch.hpp"

#include <chrono>
#include <exception>
#include <string>
#include <thread>

namespace portico::test {

/// Handles the process holds now: kernel objects (threads, events, ports...)
/// on Windows, open descriptors on Linux.
inline unsigned long process_handles()
{
#if PORTICO_BACKEND_IOCP
    DWORD count = 0;
    ::GetProcessHandleCount(::GetCurrentProcess(), &count);
    return count;
#else
    unsigned long count = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        ++count;
    }
    return count;
#endif
}

/// What the system needs started once per process before a baseline is
/// taken (Winsock on Windows; on Linux the signal registry's pipe and
/// thread, made by the first signal_set): not a leak.
inline void start_system()
{
#if PORTICO_BACKEND_IOCP
    detail::win::ensure_winsock();
#else
    (void)detail::backend::signal_registry::instance();
#endif
}

/// What the process's handles are, for a failure message: on Linux each
/// open descriptor and what it is ("3 -> anon_inode:[io_uring]"); on
/// Windows only their count (process_handles()).
inline std::string process_handle_names()
{
#if PORTICO_BACKEND_IOCP
    return std::to_string(process_handles()) + " handles";
#else
    std::string names;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        std::error_code link_ec;
        const auto target = std::filesystem::read_symlink(it->path(), link_ec);
        names += it->path().filename().string() + " -> " + (link_ec ? "?" : target.string()) + "\n";
    }
    return names;
#endif
}

/// What must return to its starting value after a test.
struct baseline {
    std::ptrdiff_t frames = debug::live_frames();
    unsigned long handles = process_handles();
    std::string handle_names = process_handle_names();

    void check() const
    {
        CHECK(debug::live_frames() == frames);
        // NOTE: the system lets go of some handles a moment after the call
        // that releases them returns (a native run saw a descriptor counted
        // at a test's start and gone when listed a moment later, with every
        // frame and operation of the test before long finished). So a count
        // above the start is waited on, for a few seconds, before it fails;
        // and one below it (a handle that was on its way out when the start
        // was counted) is no leak.
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (process_handles() > handles && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
        INFO("handles at the start:\n" << handle_names << "handles now:\n" << process_handle_names());
        CHECK(process_handles() <= handles);
    }
};

/// Returns once `threads` threads are inside ctx.run(). A pool thread
/// allocates its own state as it enters run(); a test that counts
/// allocations must not count a thread that started late.
inline void wait_for_pool(const io_context& ctx, unsigned threads)
{
    while (ctx.statistics().running_threads < threads) std::this_thread::yield();
}

/// Runs `body(ctx, threads)` to completion on a fresh context with `options`
/// (its concurrency hint set to `threads`) served by `threads` pool threads;
/// the body starts on a pool thread. Then stops and drains the context and
/// checks the baseline.
template <class Body>
void run_co_test(unsigned threads, Body body, io_context::options options)
{
    start_system();
    const baseline before;
    {
        options.concurrency_hint = threads;
        io_context ctx(options);
        std::exception_ptr failure;
        {
            thread_pool pool(ctx, threads);
            wait_for_pool(ctx, threads);
            try {
                sync_wait([](io_context& c, unsigned n, Body& b) -> task<> {
                    co_await c.schedule();
                    co_await b(c, n);
                }(ctx, threads, body));
            } catch (...) {
                failure = std::current_exception();
            }
            ctx.stop();
            pool.join();
        }
        CHECK(ctx.outstanding_work() == 0);
        if (failure) std::rethrow_exception(failure);
    }
    before.check();
}

/// As above, with default options but for skip-on-success.
template <class Body>
void run_co_test(unsigned threads, Body body, bool skip_on_success = true)
{
    io_context::options options;
    options.skip_completion_on_success = skip_on_success;
    run_co_test(threads, std::move(body), options);
}

} // namespace portico::test

#define PORTICO_CO_TEST_CAT2(a, b) a##b
#define PORTICO_CO_TEST_CAT(a, b) PORTICO_CO_TEST_CAT2(a, b)
// Runs the body once per pool size (1, 4) and per skip-on-success setting
// in the trailing list.
#define PORTICO_CO_TEST_CASE_IMPL(name, tags, fn, ...)                                                                 \
    static ::portico::task<> fn(::portico::io_context& ctx, unsigned threads);                                         \
    TEST_CASE(name, tags)                                                                                              \
    {                                                                                                                  \
        for (unsigned portico_threads : {1u, 4u}) {                                                                    \
            for (bool portico_skip : {__VA_ARGS__}) {                                                                  \
                DYNAMIC_SECTION("pool threads: " << portico_threads << ", skip on success: " << portico_skip)          \
                {                                                                                                      \
                    ::portico::test::run_co_test(portico_threads, &fn, portico_skip);                                  \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }                                                                                                                  \
    static ::portico::task<> fn([[maybe_unused]] ::portico::io_context& ctx, [[maybe_unused]] unsigned threads)

// NOTE: never write co_await inside a CHECK/REQUIRE: GCC evaluates it twice
// there (Catch2 v2 also passes the expression to __builtin_constant_p). Await
// into a local, then check the local.

/// A test case whose body is a coroutine `task<>` with `ctx` (the context)
/// and `threads` (its pool size) in scope; runs with 1 and with 4 threads.
#define PORTICO_CO_TEST_CASE(name, tags)                                                                               \
    PORTICO_CO_TEST_CASE_IMPL(name, tags, PORTICO_CO_TEST_CAT(portico_co_test_, __LINE__), true)

/// As PORTICO_CO_TEST_CASE, and each thread count both with immediate
/// successes resumed inline (skip on success) and through the port. The
/// io_uring backend has no such option (every request completes through its
/// ring): there the second run would repeat the first, so it runs once.
#if PORTICO_BACKEND_IOCP
#define PORTICO_IO_TEST_CASE(name, tags)                                                                               \
    PORTICO_CO_TEST_CASE_IMPL(name, tags, PORTICO_CO_TEST_CAT(portico_io_test_, __LINE__), true, false)
#else
#define PORTICO_IO_TEST_CASE(name, tags)                                                                               \
    PORTICO_CO_TEST_CASE_IMPL(name, tags, PORTICO_CO_TEST_CAT(portico_io_test_, __LINE__), true)
#endif
