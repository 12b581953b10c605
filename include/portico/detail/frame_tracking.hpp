// portico: optional counting of coroutine frames (PORTICO_TRACK_FRAMES).
#pragma once

#include <portico/config.hpp>

#include <atomic>
#include <cstddef>
#include <new>

PORTICO_NAMESPACE_BEGIN

namespace debug {

/// Number of coroutine frames allocated by portico and not yet freed.
/// Always 0 unless the including project defines PORTICO_TRACK_FRAMES.
/// Thread safety: may be called from any thread.
inline std::atomic<std::ptrdiff_t>& live_frames_counter() noexcept
{
    static std::atomic<std::ptrdiff_t> count{0};
    return count;
}

/// Reads live_frames_counter(); see there.
inline std::ptrdiff_t live_frames() noexcept { return live_frames_counter().load(std::memory_order_acquire); }

} // namespace debug

namespace detail {

/// Base for every promise type portico defines: routes frame allocation
/// through a counter when PORTICO_TRACK_FRAMES is defined.
struct frame_allocation {
#if defined(PORTICO_TRACK_FRAMES)
    static void* operator new(std::size_t size)
    {
        void* p = ::operator new(size);
        debug::live_frames_counter().fetch_add(1, std::memory_order_relaxed);
        return p;
    }
    static void operator delete(void* p, std::size_t size) noexcept
    {
        // RACE: release pairs with the acquire in live_frames(), so a test that
        // reads 0 also sees everything the frame's coroutine wrote.
        debug::live_frames_counter().fetch_sub(1, std::memory_order_release);
        ::operator delete(p);
        (void)size;
    }
#endif
};

} // namespace detail

PORTICO_NAMESPACE_END
