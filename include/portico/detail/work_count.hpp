// portico: the outstanding-work count and the stop flag by which every
// backend's scheduler drains (docs/design/shutdown.md).
#pragma once

#include <portico/config.hpp>

#include <atomic>
#include <cassert>
#include <cstdint>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// Counts the operations that will produce a completion, and says when a
/// stopped scheduler has none left. The scheduler wakes a thread whenever
/// stop() or finished() asks it to: one of its threads then sees drained().
///
/// Thread safety: every member may be called from any thread.
class work_count {
public:
    /// Counts an operation that will produce a completion. Call before the
    /// completion can possibly be dispatched.
    void started() noexcept { outstanding_.fetch_add(1, std::memory_order_relaxed); }

    /// The other half of started(), after the completion was handled.
    /// Returns true when the caller must wake a thread: the count reached
    /// zero after stop().
    [[nodiscard]] bool finished() noexcept
    {
        const auto before = outstanding_.fetch_sub(1, std::memory_order_seq_cst);
        assert(before > 0 && "work finished without having started");
        return before == 1 && stopped_.load(std::memory_order_seq_cst);
    }

    /// Marks the scheduler stopped; the caller then wakes a thread, always.
    /// RACE: seq_cst here and in finished() and drained(): either a running
    /// thread sees the count at zero after this store, or the operation that
    /// brings it to zero sees the flag and its caller wakes one.
    void stop() noexcept { stopped_.store(true, std::memory_order_seq_cst); }

    /// True once stop() was called and nothing is outstanding: run() returns.
    [[nodiscard]] bool drained() const noexcept
    {
        return stopped_.load(std::memory_order_seq_cst) && outstanding_.load(std::memory_order_seq_cst) == 0;
    }

    [[nodiscard]] bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
    [[nodiscard]] std::int64_t outstanding() const noexcept { return outstanding_.load(std::memory_order_acquire); }

private:
    std::atomic<bool> stopped_{false};
    std::atomic<std::int64_t> outstanding_{0};
};

} // namespace detail

PORTICO_NAMESPACE_END
