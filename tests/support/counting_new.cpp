// The global operator new and delete, counting allocations and live bytes
// (see heap_counter.hpp). Plain malloc underneath, with the requested size
// kept in a prefix so that an unsized delete can subtract it; aligned forms
// over _aligned_malloc on Windows, aligned_alloc elsewhere.
#include "support/heap_counter.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(_WIN32)
#include <malloc.h>
#endif

namespace {

std::atomic<std::uint64_t> allocations{0};
std::atomic<std::size_t> largest{0};
std::atomic<std::size_t> live{0};
std::atomic<std::size_t> peak{0};
std::atomic<unsigned> refusals{0};

// NOTE: the prefix keeps the alignment operator new promises,
// __STDCPP_DEFAULT_NEW_ALIGNMENT__ (malloc gives at least that on the
// platforms portico builds for); an aligned allocation uses a prefix of its
// own alignment. Not alignof(max_align_t): in the MSVC ABI that is 8 where
// new promises 16, and clang-cl stores 16-byte vectors into coroutine frames
// on that promise (a crash under msvc-abi, frame_cache.cpp has the test).
constexpr std::size_t prefix = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
static_assert(prefix >= sizeof(std::size_t));
static_assert(prefix >= alignof(std::max_align_t));

void note_size(std::size_t size) noexcept
{
    std::size_t seen = largest.load(std::memory_order_relaxed);
    while (size > seen && !largest.compare_exchange_weak(seen, size, std::memory_order_relaxed)) {
    }
}

void* record(void* block, std::size_t room, std::size_t size) noexcept
{
    auto* user = static_cast<std::byte*>(block) + room;
    ::new (user - sizeof(std::size_t)) std::size_t(size);
    allocations.fetch_add(1, std::memory_order_relaxed);
    const std::size_t now = live.fetch_add(size, std::memory_order_relaxed) + size;
    std::size_t seen = peak.load(std::memory_order_relaxed);
    while (now > seen && !peak.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
    note_size(size);
    return user;
}

std::byte* forget(void* p, std::size_t room) noexcept
{
    auto* user = static_cast<std::byte*>(p);
    live.fetch_sub(*reinterpret_cast<std::size_t*>(user - sizeof(std::size_t)), std::memory_order_relaxed);
    return user - room;
}

// Takes one of the refusals fail_next_allocations() asked for, if any.
bool refuse() noexcept
{
    unsigned left = refusals.load(std::memory_order_relaxed);
    while (left != 0 && !refusals.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
    }
    return left != 0;
}

void* allocate(std::size_t size)
{
    if (refuse()) throw std::bad_alloc();
    if (void* p = std::malloc(prefix + size)) return record(p, prefix, size);
    throw std::bad_alloc();
}

void release(void* p) noexcept
{
    if (p != nullptr) std::free(forget(p, prefix));
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment)
{
    if (refuse()) throw std::bad_alloc();
    const std::size_t room = (std::max)(prefix, static_cast<std::size_t>(alignment));
    const std::size_t a = static_cast<std::size_t>(alignment);
#if defined(_WIN32)
    void* p = ::_aligned_malloc(room + size, a);
#else
    void* p = std::aligned_alloc(a, (room + size + a - 1) / a * a);
#endif
    if (p == nullptr) throw std::bad_alloc();
    return record(p, room, size);
}

void release_aligned(void* p, std::align_val_t alignment) noexcept
{
    if (p == nullptr) return;
    void* block = forget(p, (std::max)(prefix, static_cast<std::size_t>(alignment)));
#if defined(_WIN32)
    ::_aligned_free(block);
#else
    std::free(block);
#endif
}

} // namespace

std::uint64_t portico::test::heap_allocations() noexcept { return allocations.load(std::memory_order_relaxed); }
std::size_t portico::test::live_heap_bytes() noexcept { return live.load(std::memory_order_relaxed); }
std::size_t portico::test::largest_allocation() noexcept { return largest.load(std::memory_order_relaxed); }
void portico::test::reset_largest_allocation() noexcept { largest.store(0, std::memory_order_relaxed); }
void portico::test::fail_next_allocations(unsigned count) noexcept { refusals.store(count, std::memory_order_relaxed); }
unsigned portico::test::allocation_failures_left() noexcept { return refusals.load(std::memory_order_relaxed); }
std::size_t portico::test::peak_live_heap_bytes() noexcept { return peak.load(std::memory_order_relaxed); }
void portico::test::reset_peak_live_heap() noexcept
{
    peak.store(live.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

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
void operator delete(void* p, std::align_val_t alignment) noexcept { release_aligned(p, alignment); }
void operator delete[](void* p, std::align_val_t alignment) noexcept { release_aligned(p, alignment); }
void operator delete(void* p, std::size_t, std::align_val_t alignment) noexcept { release_aligned(p, alignment); }
void operator delete[](void* p, std::size_t, std::align_val_t alignment) noexcept { release_aligned(p, alignment); }
