// What the portable part of the benchmark harness (harness.cpp) asks of the platform part:
// harness_win.cpp (the Win32 call counter, msvcrt) or harness_linux.cpp (no call counter).
// Internal to bench/servers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bench::platform {

// The most functions one program's call counter tracks.
inline constexpr std::size_t max_counted_functions = 256;

// One counted function and its calls so far.
struct call_count {
    const char* name;
    std::uint64_t calls;
};

// What read_calls() found: the dequeue counters and how many call_count entries it wrote.
struct call_totals {
    std::uint64_t dequeue_calls = 0;
    std::uint64_t completions = 0;
    std::size_t functions = 0;
};

// True when this platform counts the program's calls into the system; when false, the stats
// line carries null for them.
[[nodiscard]] bool counts_calls() noexcept;

// Reads the dequeue counters (first, so a line never shows more returns than calls), then
// each counted function into `out` (room for max_counted_functions), in no order.
[[nodiscard]] call_totals read_calls(call_count* out) noexcept;

// Starts counting (see bench::start_counting). Called once.
void start_counting();

// Makes stdout write "\n" as it is (the protocol's lines end with \n, not \r\n).
void use_binary_stdout();

// A block of `size` bytes aligned to `alignment` (a power of two above the default new
// alignment), or nullptr; freed with free_aligned_block.
[[nodiscard]] void* aligned_block(std::size_t size, std::size_t alignment) noexcept;
void free_aligned_block(void* block) noexcept;

} // namespace bench::platform
