// portico: the base of every operation the io_uring scheduler completes.
#pragma once

#include <portico/config.hpp>

#include <atomic>
#include <cstdint>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// An operation the ring completes: the request's user_data is its address.
///
/// The op lives in the awaiting coroutine's frame. From the moment the ring
/// takes its request until its completion is dispatched, the op must not
/// move, and the thread that started it must not touch it again (another
/// thread may already be completing it).
struct operation {
    /// Called once, on the thread that took the completion. `status` is 0 or
    /// an errno value; `bytes` is the request's non-negative result. Portable
    /// integer types, as the IOCP backend's (detail/backend.hpp).
    using complete_fn = void (*)(operation* op, std::uintptr_t status, std::uint32_t bytes) noexcept;

    explicit operation(complete_fn fn) noexcept : complete(fn) {}
    operation(const operation&) = delete;
    operation& operator=(const operation&) = delete;
    /// Only for an op nobody has started yet.
    operation(operation&& other) noexcept : complete(other.complete) {}
    operation& operator=(operation&&) = delete;

    complete_fn complete;
    /// Link for the scheduler's queues of posted ops (a thread's own, the
    /// shared one, a ring's inbox).
    operation* next_posted = nullptr;
    /// Set by a cancel from a thread other than the ring's (scheduler::
    /// cancel): the ring's thread cancels the request again once it has
    /// submitted it, if the cancel came while it was still queued.
    mutable std::atomic<bool> cancel_marked{false};
};

/// An operation whose one request completes many times (a multishot
/// accept): the scheduler tags its user_data (user_data_of) and, before each
/// completion, sets `more` to whether others will follow. The request's work
/// is counted once and finished with the last completion, the one where
/// `more` is false.
struct multishot_operation : operation {
    using operation::operation;
    bool more = false;
};

/// The bit that marks a multishot request's user_data (operations are at
/// least pointer-aligned, so a real address never has it).
inline constexpr std::uint64_t multishot_tag = 1;

/// The user_data a request for `op` carries.
inline std::uint64_t user_data_of(const operation* op) noexcept { return reinterpret_cast<std::uintptr_t>(op); }
inline std::uint64_t user_data_of(const multishot_operation* op) noexcept
{
    return reinterpret_cast<std::uintptr_t>(static_cast<const operation*>(op)) | multishot_tag;
}

/// user_data of a request that carries no operation: a thread was woken to
/// look at the stop and drain state.
inline constexpr std::uint64_t wake_token = 0;

} // namespace detail::uring

PORTICO_NAMESPACE_END
