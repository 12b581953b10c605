// portico: the counters a scheduler keeps, one block per thread in run()
// plus one shared block, and their sum (io_context::statistics()).
#pragma once

#include <portico/config.hpp>
#include <portico/io_statistics.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <forward_list>
#include <mutex>

PORTICO_NAMESPACE_BEGIN

namespace detail {

#if defined(_MSC_VER)
#pragma warning(push)
#pragma warning(disable : 4324) // padded to a cache line on purpose (alignas)
#endif
/// The counters themselves: one pool thread's, or the shared ones of the
/// threads outside run().
struct stat_counts {
    std::array<std::atomic<std::uint64_t>, static_cast<unsigned>(counter::count_)> values{};
    std::atomic<std::uint64_t> max_batch{0};
};

/// One pool thread's counters, on a cache line of their own. Only that
/// thread writes them (plain load + store, no locked instruction); sum()
/// reads them all. A block outlives its run() call with its counts, and the
/// next run() takes it over: a scheduler holds as many blocks as threads
/// were ever in run() at once.
struct alignas(64) stat_block : stat_counts {
    /// A thread is in run() with it (guarded by the owner's mutex).
    bool in_use = false;
};
#if defined(_MSC_VER)
#pragma warning(pop)
#endif

/// The blocks of one scheduler. Thread safety: take(), give_back(),
/// add_shared() and sum() from any thread; bump() and note_batch() only by
/// the thread holding the block.
class stat_blocks {
public:
    /// A block for a thread entering run() (io_statistics::running_threads
    /// counts it until give_back()). May allocate: call it after the
    /// thread's other state is made, so a thread is counted only once it
    /// allocates nothing more.
    stat_block* take()
    {
        std::lock_guard lock(mutex_);
        auto free = std::find_if(blocks_.begin(), blocks_.end(), [](const stat_block& b) { return !b.in_use; });
        stat_block& b = free != blocks_.end() ? *free : blocks_.emplace_front();
        b.in_use = true;
        return &b;
    }

    void give_back(stat_block& b) noexcept
    {
        std::lock_guard lock(mutex_);
        b.in_use = false;
    }

    static void bump(stat_block& b, counter c, std::uint64_t n) noexcept
    {
        auto& v = b.values[static_cast<unsigned>(c)];
        v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }

    /// Records a batch of `n` completions taken at once (max_batch).
    static void note_batch(stat_block& b, std::uint64_t n) noexcept
    {
        if (n > b.max_batch.load(std::memory_order_relaxed)) b.max_batch.store(n, std::memory_order_relaxed);
    }

    /// Adds to the shared block: for threads outside run().
    void add_shared(counter c, std::uint64_t n) noexcept
    {
        shared_.values[static_cast<unsigned>(c)].fetch_add(n, std::memory_order_relaxed);
    }

    /// Every block summed; `outstanding` is the scheduler's work count.
    [[nodiscard]] io_statistics sum(std::int64_t outstanding) const
    {
        std::array<std::uint64_t, static_cast<unsigned>(counter::count_)> total{};
        std::uint64_t max_batch = 0;
        std::uint64_t running = 0;
        auto add = [&](const stat_counts& b) {
            for (unsigned i = 0; i < total.size(); ++i) total[i] += b.values[i].load(std::memory_order_relaxed);
            max_batch = (std::max)(max_batch, b.max_batch.load(std::memory_order_relaxed));
        };
        add(shared_);
        {
            std::lock_guard lock(mutex_);
            for (const auto& b : blocks_) {
                add(b);
                if (b.in_use) ++running;
            }
        }
        io_statistics s;
        for (unsigned i = 0; i < total.size(); ++i) s.*counter_fields[i] = total[i];
        s.max_batch = max_batch;
        s.outstanding = outstanding;
        s.running_threads = running;
        return s;
    }

private:
    mutable std::mutex mutex_;
    std::forward_list<stat_block> blocks_;
    // NOTE: not a stat_block: its alignment would become the scheduler's and
    // the io_context's, which may live in a coroutine frame, and frames are
    // allocated without over-alignment.
    stat_counts shared_;
};

} // namespace detail

PORTICO_NAMESPACE_END
