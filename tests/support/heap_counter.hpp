// Counts heap allocations: the test program that links support/counting_new.cpp
// replaces the global operator new, so every allocation the process makes
// through it (portico's, the standard library's, the test's) is counted.
#pragma once

#include <cstdint>

namespace portico::test {

/// operator new calls (every form) made so far by any thread.
std::uint64_t heap_allocations() noexcept;

} // namespace portico::test
