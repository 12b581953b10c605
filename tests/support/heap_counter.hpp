// Counts heap allocations: the test program that links support/counting_new.cpp
// replaces the global operator new, so every allocation the process makes
// through it (portico's, the standard library's, the test's) is counted, and
// so are the bytes still allocated.
#pragma once

#include <cstddef>
#include <cstdint>

namespace portico::test {

/// operator new calls (every form) made so far by any thread.
std::uint64_t heap_allocations() noexcept;

/// Bytes requested from operator new (every form) and not yet deleted, by
/// any thread: the live heap of C++ allocations. What the C runtime and the
/// system allocate directly (Winsock's, Wine's) is not in it.
std::size_t live_heap_bytes() noexcept;

/// The largest single allocation since the last reset_largest_allocation().
std::size_t largest_allocation() noexcept;
void reset_largest_allocation() noexcept;

/// The most live_heap_bytes() has been since the last reset_peak_live_heap()
/// (which sets it to live_heap_bytes() now): the heap's high-water mark,
/// which is what a process's resident memory follows once the heap has
/// committed pages for it.
std::size_t peak_live_heap_bytes() noexcept;
void reset_peak_live_heap() noexcept;

/// Makes the next `count` calls of operator new, on any thread, throw
/// std::bad_alloc (0: none); for tests of what an allocation failure does.
void fail_next_allocations(unsigned count) noexcept;
/// The failures fail_next_allocations() asked for that have not happened.
unsigned allocation_failures_left() noexcept;

/// The allocations a steady-state window of any length may still show: the
/// shared frame cache grows when more frames of one size are live at once
/// than ever before, which an unusual interleaving of completions (a loaded
/// machine, a different batch order) can cause once or twice after the
/// warm-up. Anything per message shows up as hundreds.
inline constexpr std::uint64_t cache_growth_allowance = 2;

} // namespace portico::test
