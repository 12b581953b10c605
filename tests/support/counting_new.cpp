// The global operator new and delete, counting allocations and live bytes
// (see heap_counter.hpp). Plain malloc underneath; aligned forms over
// _aligned_malloc on Windows, aligned_alloc elsewhere.
#include "support/heap_counter.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {

std::atomic<std::uint64_t> allocations{0};
std::atomic<std::size_t> largest{0};
std::atomic<std::size_t> live{0};

// Every block starts with a header that records its size, so that a free
// knows how many live bytes it returns; aligned blocks keep the size just
// before the pointer handed out.
constexpr std::size_t header = 16;

void note_size(std::size_t size) noexcept
{
    std::size_t seen = largest.load(std::memory_order_relaxed);
    while (size > seen && !largest.compare_exchange_weak(seen, size, std::memory_order_relaxed)) {
    }
}

void* allocate(std::size_t size)
{
    allocations.fetch_add(1, std::memory_order_relaxed);
    note_size(size);
    auto* base = static_cast<unsigned char*>(std::malloc(header + size));
    if (base == nullptr) throw std::bad_alloc();
    std::memcpy(base, &size, sizeof size);
    live.fetch_add(size, std::memory_order_relaxed);
    return base + header;
}

void release(void* p) noexcept
{
    if (p == nullptr) return;
    auto* base = static_cast<unsigned char*>(p) - header;
    std::size_t size = 0;
    std::memcpy(&size, base, sizeof size);
    live.fetch_sub(size, std::memory_order_relaxed);
    std::free(base);
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment)
{
    allocations.fetch_add(1, std::memory_order_relaxed);
    note_size(size);
    const auto a = static_cast<std::size_t>(alignment) < header ? header : static_cast<std::size_t>(alignment);
#if defined(_WIN32)
    auto* base = static_cast<unsigned char*>(::_aligned_malloc(a + size, a));
#else
    auto* base = static_cast<unsigned char*>(std::aligned_alloc(a, (a + size + a - 1) / a * a));
#endif
    if (base == nullptr) throw std::bad_alloc();
    std::memcpy(base + a - sizeof size, &size, sizeof size);
    live.fetch_add(size, std::memory_order_relaxed);
    return base + a;
}

void release_aligned(void* p, std::align_val_t alignment) noexcept
{
    if (p == nullptr) return;
    const auto a = static_cast<std::size_t>(alignment) < header ? header : static_cast<std::size_t>(alignment);
    auto* base = static_cast<unsigned char*>(p) - a;
    std::size_t size = 0;
    std::memcpy(&size, base + a - sizeof size, sizeof size);
    live.fetch_sub(size, std::memory_order_relaxed);
#if defined(_WIN32)
    ::_aligned_free(base);
#else
    std::free(base);
#endif
}

} // namespace

std::uint64_t portico::test::heap_allocations() noexcept { return allocations.load(std::memory_order_relaxed); }
std::size_t portico::test::largest_allocation() noexcept { return largest.load(std::memory_order_relaxed); }
void portico::test::reset_largest_allocation() noexcept { largest.store(0, std::memory_order_relaxed); }
std::size_t portico::test::live_heap_bytes() noexcept { return live.load(std::memory_order_relaxed); }

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept
{
    try {
        return allocate(size);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void* operator new(std::size_t size, std::align_val_t alignment) { return allocate_aligned(size, alignment); }
void* operator new[](std::size_t size, std::align_val_t alignment) { return allocate_aligned(size, alignment); }

void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t a) noexcept { release_aligned(p, a); }
void operator delete[](void* p, std::align_val_t a) noexcept { release_aligned(p, a); }
void operator delete(void* p, std::size_t, std::align_val_t a) noexcept { release_aligned(p, a); }
void operator delete[](void* p, std::size_t, std::align_val_t a) noexcept { release_aligned(p, a); }
