// portico: what an open socket (or file) shares on Linux with the operations
// started on it and with the scheduler's rings: closed or not, the rings its
// requests went to, and a cancel or close the rings still owe it.
#pragma once

#include <portico/config.hpp>

#include <atomic>
#include <cstdint>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// What an open socket shares with the operations that start it from a pool
/// thread on behalf of another thread (socket_op's hop): whether it was
/// closed meanwhile. The lock orders such a start against close(): either
/// the request is submitted before close() cancels the descriptor's requests,
/// or the start sees `closed` and submits nothing. Reference counted: the
/// socket_handle holds one reference, each hop in flight another, and a
/// cancel that waits for a ring (below) one more.
///
/// Its lock is a flag that waits in the kernel when taken (C++20's
/// atomic_flag::wait), not a std::mutex: the two threads it orders meet
/// only when a close() races an operation's start, and every socket has a
/// state, so its size counts (retained_memory.cpp measures it per idle
/// connection; a std::mutex alone is 40 bytes).
///
/// It also says on which rings the socket's requests went (one thread's
/// ring per request: scheduler::ring_bit), so close() cancels on those
/// rings only, usually the one of the thread that serves the connection.
///
/// A ring queues its thread's requests and submits them together, and
/// until then no cancel finds them (scheduler::cancel_descriptor). A cancel
/// or close that finds a ring with requests queued leaves its work there:
/// the state joins that ring's list of owed cancels (`next_owed`), and the
/// ring's thread cancels the descriptor's requests once it has submitted
/// its queue, then goes on to the next ring (`cursor`), and the last step
/// closes the descriptor if asked (`close_after`): its number stays taken
/// until no queued request can name it.
struct socket_state {
    std::atomic<unsigned> references{1};
    std::atomic_flag busy;               // clear: unlocked
    bool closed = false;                 // guarded by the lock
    std::atomic<std::uint16_t> rings{0}; // scheduler::ring_bit of each ring used

    // The cancel owed by the rings, all guarded by the lock (the link also
    // by the list's).
    socket_state* next_owed = nullptr; // in one ring's list of owed cancels
    int owed_fd = -1;                  // the descriptor to cancel (and close)
    std::uint16_t cursor = 0;          // the next ring to visit
    bool close_after = false;          // close owed_fd once every ring has cancelled
    bool owed = false;                 // a cancel is on its way round the rings

    /// Before a request goes to ring `bit`. Relaxed: a close() that must
    /// see it comes after the request's start by the user's own ordering
    /// (or this lock, for a start on behalf of another thread).
    void note_ring(std::uint16_t bit) noexcept
    {
        if ((rings.load(std::memory_order_relaxed) & bit) == 0) rings.fetch_or(bit, std::memory_order_relaxed);
    }

    void lock() noexcept
    {
        while (busy.test_and_set(std::memory_order_acquire)) busy.wait(true, std::memory_order_relaxed);
    }
    void unlock() noexcept
    {
        busy.clear(std::memory_order_release);
        busy.notify_one();
    }
    void acquire() noexcept { references.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept
    {
        if (references.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
};

// Its size counts (one per socket): 24 bytes, glibc's smallest block, which
// an 8-byte state took as well.
static_assert(sizeof(socket_state) <= 24, "socket_state grew: see retained_memory.cpp");

} // namespace detail::uring

PORTICO_NAMESPACE_END
