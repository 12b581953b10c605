// The global operator new and delete, counting allocations (see
// heap_counter.hpp). Plain malloc underneath; aligned forms over
// _aligned_malloc on Windows, aligned_alloc elsewhere.
#include "support/heap_counter.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {

std::atomic<std::uint64_t> allocations{0};
std::atomic<std::size_t> largest{0};

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
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment)
{
    allocations.fetch_add(1, std::memory_order_relaxed);
    note_size(size);
    const auto a = static_cast<std::size_t>(alignment);
#if defined(_WIN32)
    void* p = ::_aligned_malloc(size == 0 ? 1 : size, a);
#else
    void* p = std::aligned_alloc(a, (size + a - 1) / a * a);
#endif
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

void release_aligned(void* p) noexcept
{
#if defined(_WIN32)
    ::_aligned_free(p);
#else
    std::free(p);
#endif
}

} // namespace

std::uint64_t portico::test::heap_allocations() noexcept { return allocations.load(std::memory_order_relaxed); }
std::size_t portico::test::largest_allocation() noexcept { return largest.load(std::memory_order_relaxed); }
void portico::test::reset_largest_allocation() noexcept { largest.store(0, std::memory_order_relaxed); }

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

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { release_aligned(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release_aligned(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release_aligned(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release_aligned(p); }
