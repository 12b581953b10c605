// portico: where coroutine frames come from — a per-thread cache of recycled
// frames, and optional counting of live frames (PORTICO_TRACK_FRAMES).
#pragma once

#include <portico/config.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>

// AddressSanitizer finds use-after-free in frames only if every frame really
// goes back to the heap: no recycling under it.
#if defined(__SANITIZE_ADDRESS__)
#define PORTICO_DETAIL_FRAME_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PORTICO_DETAIL_FRAME_CACHE 0
#endif
#endif
#if !defined(PORTICO_DETAIL_FRAME_CACHE)
#define PORTICO_DETAIL_FRAME_CACHE 1
#endif

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

/// Recycled coroutine frames. A session loop that calls read_all() or
/// write_all() per message takes their frames from here once the first
/// messages have made enough of them, never from the heap. Blocks are grouped
/// by size in 64-byte steps up to 4 KiB (larger frames always use the heap);
/// each size keeps at most limit_per_class() bytes of free blocks (256 KiB
/// unless set), the rest go back to the heap. Kept blocks live until the
/// process exits or trim_to() frees them.
///
/// One free list per size, shared by all threads behind a tiny spin lock.
/// Per-thread lists were tried first and lose: a frame made on the thread
/// where a read completed is often freed on the thread where the next write
/// completed, so blocks pile up on threads that only free while threads that
/// only allocate keep going to the heap. A shared list holds exactly as many
/// blocks as were ever live at once. (Everything here is trivially
/// destructible: no thread-exit or static-destruction ordering to get wrong.)
class frame_cache {
public:
    static constexpr std::size_t granule = 64;
    static constexpr std::size_t classes = 64; // up to 4 KiB
    /// The limit per size class until set_limit_per_class() changes it.
    static constexpr std::size_t default_bytes_per_class = 256 * 1024;

    /// A block of at least `size` bytes from the cache, or nullptr.
    static void* take(std::size_t size) noexcept
    {
        const std::size_t c = class_of(size);
        if (c >= classes) return nullptr;
        auto& list = lists()[c];
        // The common miss (nothing free) takes no lock.
        if (list.count.load(std::memory_order_relaxed) == 0) return nullptr;
        list.lock();
        node* b = list.head;
        if (b != nullptr) {
            list.head = b->next;
            list.count.store(list.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        }
        list.unlock();
        return b;
    }

    /// Keeps `p`, a block of rounded(size) bytes, for reuse; false if its
    /// list is full and the caller must free it.
    static bool give(void* p, std::size_t size) noexcept
    {
        const std::size_t c = class_of(size);
        if (c >= classes) return false;
        auto& list = lists()[c];
        bool kept = false;
        list.lock();
        // NOTE: read under the lock, so a give() that follows a trim_to()'s
        // pass over this list sees its new limit.
        const std::size_t cap = limit().load(std::memory_order_relaxed) / ((c + 1) * granule);
        const unsigned count = list.count.load(std::memory_order_relaxed);
        if (count < cap) {
            list.head = ::new (p) node{list.head};
            list.count.store(count + 1, std::memory_order_relaxed);
            kept = true;
        }
        list.unlock();
        return kept;
    }

    /// Bytes actually allocated for a frame of `size`: the whole class, so
    /// any frame of the class fits in a recycled block.
    static std::size_t rounded(std::size_t size) noexcept
    {
        return class_of(size) < classes ? (class_of(size) + 1) * granule : size;
    }

    /// Bytes of the blocks kept now (a snapshot; lists may change meanwhile).
    static std::size_t cached_bytes() noexcept
    {
        std::size_t bytes = 0;
        for (std::size_t c = 0; c < classes; ++c) {
            bytes += lists()[c].count.load(std::memory_order_relaxed) * (c + 1) * granule;
        }
        return bytes;
    }

    /// The most bytes of free blocks one size class keeps.
    static std::size_t limit_per_class() noexcept { return limit().load(std::memory_order_relaxed); }

    /// Sets limit_per_class() and frees, at once, what each list holds
    /// beyond it. Returns the bytes freed.
    static std::size_t set_limit_per_class(std::size_t bytes) noexcept
    {
        limit().store(bytes, std::memory_order_relaxed);
        return trim_to(bytes);
    }

    /// Frees the blocks each list holds beyond `bytes` of them (0: all),
    /// leaving the limit as it is. Returns the bytes freed.
    static std::size_t trim_to(std::size_t bytes) noexcept
    {
        std::size_t freed = 0;
        for (std::size_t c = 0; c < classes; ++c) {
            const std::size_t block = (c + 1) * granule;
            const std::size_t keep = bytes / block;
            auto& list = lists()[c];
            node* excess = nullptr;
            list.lock();
            unsigned count = list.count.load(std::memory_order_relaxed);
            while (count > keep) {
                node* b = list.head;
                list.head = b->next;
                b->next = excess;
                excess = b;
                --count;
            }
            list.count.store(count, std::memory_order_relaxed);
            list.unlock();
            // Freed outside the lock: takers and givers need not wait for the heap.
            while (excess != nullptr) {
                node* next = excess->next;
                ::operator delete(excess);
                freed += block;
                excess = next;
            }
        }
        return freed;
    }

private:
    struct node {
        node* next;
    };

#if defined(_MSC_VER)
#pragma warning(push)
#pragma warning(disable : 4324) // padded to a cache line on purpose (alignas)
#endif
    struct alignas(64) free_list {
        std::atomic_flag busy = ATOMIC_FLAG_INIT;
        node* head = nullptr;
        // Written under the lock; read without it for the cheap miss.
        std::atomic<unsigned> count{0};

        void lock() noexcept
        {
            // Held for a few instructions; a holder preempted mid-way is
            // waited out with yield rather than burning the time slice.
            for (unsigned spins = 0; busy.test_and_set(std::memory_order_acquire); ++spins) {
                if (spins >= 64) std::this_thread::yield();
            }
        }
        void unlock() noexcept { busy.clear(std::memory_order_release); }
    };
#if defined(_MSC_VER)
#pragma warning(pop)
#endif

    // Nothing to run at exit: no static-destruction order to get wrong.
    static_assert(std::is_trivially_destructible_v<free_list>);

    static std::array<free_list, classes>& lists() noexcept
    {
        static std::array<free_list, classes> all;
        return all;
    }

    static std::atomic<std::size_t>& limit() noexcept
    {
        static std::atomic<std::size_t> bytes{default_bytes_per_class};
        return bytes;
    }

    static std::size_t class_of(std::size_t size) noexcept { return (size - 1) / granule; }
};

/// Where a frame destroyed while an I/O operation inside it is still
/// pending goes: the operation records itself here from its destructor, the
/// frame's operator delete then keeps the block (instead of freeing it) and
/// stores it in the record, and the operation frees it when the kernel's
/// completion finally arrives. See docs/design/operations.md.
struct deferred_frame {
    void* block = nullptr;
    std::size_t size = 0;
    /// The frame's operator delete and the operation's completion both
    /// arrive here, in either order; the last one frees the block.
    std::atomic<unsigned> pending{2};

    /// True for the last of the two.
    bool arrive() noexcept { return pending.fetch_sub(1, std::memory_order_acq_rel) == 1; }
};

/// The operations orphaned by the frame destruction running on this thread
/// (a frame may destroy child frames, each with its own). Trivially
/// destructible (see frame_cache).
struct orphan_registry {
    static constexpr unsigned capacity = 16;
    const void* ops[capacity];
    deferred_frame* records[capacity];
    unsigned count;

    static orphan_registry& for_this_thread() noexcept
    {
        static thread_local orphan_registry r{};
        return r;
    }

    /// Called from the destructor of a pending operation at `op`. False if
    /// too many are pending at once (the caller must not let the frame go).
    bool add(const void* op, deferred_frame* record) noexcept
    {
        if (count == capacity) return false;
        ops[count] = op;
        records[count] = record;
        ++count;
        return true;
    }

    /// The record of an orphaned operation inside [p, p + size), removed.
    deferred_frame* claim(void* p, std::size_t size) noexcept
    {
        const auto* begin = static_cast<const char*>(p);
        for (unsigned i = 0; i < count; ++i) {
            const auto* op = static_cast<const char*>(ops[i]);
            if (op >= begin && op < begin + size) {
                deferred_frame* r = records[i];
                --count;
                ops[i] = ops[count];
                records[i] = records[count];
                return r;
            }
        }
        return nullptr;
    }
};

/// Base for every promise type portico defines: frames come from the
/// frame_cache, are kept alive while a destroyed frame's operation is still
/// pending (orphan_registry), and are counted when PORTICO_TRACK_FRAMES is
/// defined.
struct frame_allocation {
    static void* operator new(std::size_t size)
    {
        void* p = nullptr;
#if PORTICO_DETAIL_FRAME_CACHE
        p = frame_cache::take(size);
        if (p == nullptr) p = ::operator new(frame_cache::rounded(size));
#else
        p = ::operator new(size);
#endif
#if defined(PORTICO_TRACK_FRAMES)
        debug::live_frames_counter().fetch_add(1, std::memory_order_relaxed);
#endif
        return p;
    }

    static void operator delete(void* p, std::size_t size) noexcept
    {
        auto& orphans = orphan_registry::for_this_thread();
        if (orphans.count != 0) {
            if (deferred_frame* record = orphans.claim(p, size)) {
                // The kernel may still own an OVERLAPPED in this block: the
                // completion frees it, unless it already came.
                record->block = p;
                record->size = size;
                if (!record->arrive()) return;
            }
        }
        release(p, size);
    }

    /// Frees a frame block for good (also a deferred one, by its operation).
    static void release(void* p, std::size_t size) noexcept
    {
#if defined(PORTICO_TRACK_FRAMES)
        // RACE: release pairs with the acquire in live_frames(), so a test that
        // reads 0 also sees everything the frame's coroutine wrote.
        debug::live_frames_counter().fetch_sub(1, std::memory_order_release);
#endif
#if PORTICO_DETAIL_FRAME_CACHE
        if (frame_cache::give(p, size)) return;
#endif
        (void)size;
        ::operator delete(p);
    }
};

} // namespace detail

PORTICO_NAMESPACE_END
