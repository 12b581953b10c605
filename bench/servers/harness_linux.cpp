// The Linux part of the benchmark harness (bench/PROTOCOL.md, harness_platform.hpp), for the
// native servers. It counts no system calls: the servers reach the kernel by different roads
// (portico and the raw server's liburing make io_uring_enter system calls without going
// through libc, Asio's epoll reactor calls libc), so no one interposition point would count
// the three alike, as the import-table patch does under Windows. The stats line says so with
// null.
#include "harness_platform.hpp"

#include <cstdlib>
#include <limits>

namespace bench::platform {

bool counts_calls() noexcept { return false; }

call_totals read_calls(call_count*) noexcept { return {}; }

void start_counting() {}

// glibc's stdout writes "\n" as it is.
void use_binary_stdout() {}

void* aligned_block(std::size_t size, std::size_t alignment) noexcept
{
    // NOTE: std::aligned_alloc wants a size that is a multiple of the alignment.
    if (size > std::numeric_limits<std::size_t>::max() - alignment) return nullptr;
    return std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

void free_aligned_block(void* block) noexcept { std::free(block); }

} // namespace bench::platform
