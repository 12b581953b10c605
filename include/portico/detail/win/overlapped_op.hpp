// portico: the base of every operation the completion port completes.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>

#include <cstdint>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// Completion keys the scheduler gives the port. Every packet carries one.
enum class completion_key : ULONG_PTR {
    /// No operation attached: a thread was woken to re-check the stop and
    /// drain state. lpOverlapped is null.
    wake = 0,
    /// lpOverlapped is an overlapped_op handed to PostQueuedCompletionStatus
    /// by portico itself (schedule, timers, cancellations); its result is in
    /// the op, not in the OVERLAPPED.
    posted = 1,
    /// lpOverlapped is an overlapped_op whose Win32 I/O call completed; the
    /// NTSTATUS is in OVERLAPPED::Internal. Handles are associated with this key.
    io = 2,
};

/// An operation the completion port completes. It *is* an OVERLAPPED, so the
/// pointer the kernel hands back converts to the op with a static_cast.
///
/// The op lives in the awaiting coroutine's frame. From the moment the
/// kernel (or PostQueuedCompletionStatus) accepts it until its completion is
/// dispatched, the kernel owns the OVERLAPPED: the op must not move, and the
/// thread that started it must not touch it again (another thread may already
/// be completing it). Copying is deleted for that reason, and moving is only
/// for ops not started yet.
struct overlapped_op : OVERLAPPED {
    /// Called once, on the thread that dequeued the completion. `status` is
    /// the NTSTATUS for io-key packets and unused for posted ones; `bytes`
    /// is the byte count. Must not throw. Portable integer types, so the
    /// awaiters of the public headers can name it (detail/backend.hpp).
    using complete_fn = void (*)(overlapped_op* op, std::uintptr_t status, std::uint32_t bytes) noexcept;

    explicit overlapped_op(complete_fn fn) noexcept : OVERLAPPED{}, complete(fn) {}
    overlapped_op(const overlapped_op&) = delete;
    overlapped_op& operator=(const overlapped_op&) = delete;
    /// Only for an op nobody has started yet (an awaiter handed to when_all
    /// or with_timeout before it is awaited): the kernel has never seen it.
    overlapped_op(overlapped_op&& other) noexcept : OVERLAPPED{}, complete(other.complete) {}
    overlapped_op& operator=(overlapped_op&&) = delete;

    /// Clears the OVERLAPPED before the op is reused for another call.
    void reset_overlapped() noexcept { static_cast<OVERLAPPED&>(*this) = OVERLAPPED{}; }

    complete_fn complete;
    /// Link for the scheduler's fallback queue (posts the port refused).
    overlapped_op* next_posted = nullptr;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
