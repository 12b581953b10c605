// Heap allocations and live heap bytes so far, where the test program counts
// them (support/counting_new.cpp): nothing under ThreadSanitizer, which brings
// its own operator new, nor under AddressSanitizer, where every coroutine
// frame goes back to the heap on purpose (so that use-after-free in frames is
// caught). The native GCC build and both Windows builds count.
#pragma once

#include <portico/detail/frame_allocation.hpp>

#include "support/heap_counter.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace portico::test {

/// heap_allocations(), where this build counts them.
inline std::optional<std::uint64_t> allocations_now()
{
#if PORTICO_DETAIL_FRAME_CACHE && defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    return heap_allocations();
#else
    return std::nullopt;
#endif
}

/// live_heap_bytes(), where this build counts them.
inline std::optional<std::size_t> live_bytes_now()
{
#if PORTICO_DETAIL_FRAME_CACHE && defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    return live_heap_bytes();
#else
    return std::nullopt;
#endif
}

/// live_heap_bytes(), wherever the program counts it (not under TSan),
/// frame cache or not: for a measurement that turns the cache off itself.
inline std::optional<std::size_t> live_bytes_uncached()
{
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    return live_heap_bytes();
#else
    return std::nullopt;
#endif
}

/// largest_allocation() since reset_largest_counted(), wherever the program
/// counts allocations (not under TSan).
inline std::optional<std::size_t> largest_allocation_counted()
{
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    return largest_allocation();
#else
    return std::nullopt;
#endif
}

/// reset_largest_allocation(), where there is one.
inline void reset_largest_counted()
{
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    reset_largest_allocation();
#endif
}

} // namespace portico::test
