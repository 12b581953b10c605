// portico: thread_pool — run an io_context on N threads.
#pragma once

#include <portico/config.hpp>
#include <portico/io_context.hpp>

#include <cstddef>
#include <thread>
#include <vector>

PORTICO_NAMESPACE_BEGIN

/// Starts `threads` threads that each call `ctx.run()`.
///
/// join() (or the destructor) waits for them, which happens once the context
/// is stopped and drained: call ctx.stop() first. Thread safety: one owner;
/// the threads it starts are the context's pool threads.
class thread_pool {
public:
    /// Starts the threads. Throws std::system_error if one cannot be created
    /// (the ones already started keep running and are joined by ~thread_pool).
    thread_pool(io_context& ctx, std::size_t threads)
    {
        threads_.reserve(threads);
        for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([&ctx] { ctx.run(); });
    }

    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() { join(); }

    /// Waits for every thread to return from run(). Idempotent.
    void join()
    {
        for (auto& t : threads_) {
            if (t.joinable()) t.join();
        }
    }

    /// Number of threads started.
    [[nodiscard]] std::size_t size() const noexcept { return threads_.size(); }

private:
    std::vector<std::thread> threads_;
};

PORTICO_NAMESPACE_END
