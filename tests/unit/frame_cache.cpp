#include <portico/frame_cache.hpp>

#include <portico/detail/frame_allocation.hpp>

#include "support/catch.hpp"
#include "support/heap_counter.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace {

/// Allocated like a coroutine frame of portico's: 1,000 bytes, so blocks of
/// the 1,024-byte size class.
struct frame_like : portico::detail::frame_allocation {
    std::array<std::byte, 1000> bytes;
};

constexpr std::size_t block = 1024;

/// Makes `n` frames live at once, then ends them all.
void churn(std::size_t n)
{
    std::vector<std::unique_ptr<frame_like>> frames;
    frames.reserve(n);
    for (std::size_t i = 0; i < n; ++i) frames.push_back(std::make_unique<frame_like>());
}

/// Restores the default limit at the end of a test, whatever happens.
struct limit_guard {
    ~limit_guard() { portico::set_frame_cache_limit(portico::detail::frame_cache::default_bytes_per_class); }
};

} // namespace

TEST_CASE("frames that ended are kept up to the limit per size, and trimming gives them back", "[frame_cache]")
{
    limit_guard restore;
    CHECK(portico::frame_cache_limit() == 256 * 1024);
    (void)portico::trim_frame_cache();
    CHECK(portico::frame_cache_bytes() == 0);
    CHECK(portico::set_frame_cache_limit(64 * block) == 0); // nothing kept, nothing to free
    CHECK(portico::frame_cache_limit() == 64 * block);

#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    const std::size_t live = portico::test::live_heap_bytes();
#endif
    churn(300);
#if PORTICO_DETAIL_FRAME_CACHE
    // 300 were live at once; 64 of them are kept, the rest went back.
    CHECK(portico::frame_cache_bytes() == 64 * block);
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    CHECK(portico::test::live_heap_bytes() - live == 64 * block);
    // The next 64 frames come from the cache: no allocation.
    const auto allocations = portico::test::heap_allocations();
    {
        std::vector<std::unique_ptr<frame_like>> frames(64);
        const auto vector_allocation = portico::test::heap_allocations();
        for (auto& f : frames) f = std::make_unique<frame_like>();
        CHECK(portico::test::heap_allocations() == vector_allocation);
    }
    CHECK(portico::test::heap_allocations() - allocations == 1); // the vector's
#endif
    // A lower limit frees the excess at once.
    CHECK(portico::set_frame_cache_limit(16 * block) == 48 * block);
    CHECK(portico::frame_cache_bytes() == 16 * block);
    CHECK(portico::trim_frame_cache() == 16 * block);
    CHECK(portico::frame_cache_bytes() == 0);
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    CHECK(portico::test::live_heap_bytes() == live);
#endif
#else
    // AddressSanitizer: no cache, every frame goes back to the heap.
    CHECK(portico::frame_cache_bytes() == 0);
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    CHECK(portico::test::live_heap_bytes() == live);
#endif
#endif
}

TEST_CASE("a frame cache limit of 0 keeps no frame", "[frame_cache]")
{
    limit_guard restore;
    (void)portico::set_frame_cache_limit(0);
    churn(100);
    CHECK(portico::frame_cache_bytes() == 0);
}

TEST_CASE("every frame block has the alignment operator new promises, from the heap and from the cache",
          "[frame_cache]")
{
    // Compilers store 16-byte vectors into a coroutine frame on that promise
    // (__STDCPP_DEFAULT_NEW_ALIGNMENT__); a block short of it crashes there.
    // In the counting builds this also checks the test's own operator new.
    constexpr std::size_t alignment = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
    const auto misaligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % alignment != 0; };
    limit_guard restore;
    for (std::size_t size : {std::size_t{24}, std::size_t{200}, std::size_t{1000}, std::size_t{5000}}) {
        INFO("frame of " << size << " bytes");
        std::vector<void*> blocks;
        int bad = 0;
        for (int round = 0; round < 2; ++round) { // the second round reuses the first's blocks
            for (int i = 0; i < 32; ++i) blocks.push_back(portico::detail::frame_allocation::operator new(size));
            for (void* p : blocks) {
                if (misaligned(p)) ++bad;
                portico::detail::frame_allocation::operator delete(p, size);
            }
            blocks.clear();
        }
        CHECK(bad == 0);
    }
}
