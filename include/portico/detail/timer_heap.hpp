// portico: an indexed binary min-heap of timer nodes (portable).
#pragma once

#include <portico/config.hpp>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// A node embedded in each timer operation; the heap stores pointers to it
/// and keeps `heap_index` current so a cancelled timer is removed in
/// O(log n) without a search.
struct timer_node {
    static constexpr std::size_t not_in_heap = static_cast<std::size_t>(-1);

    std::chrono::steady_clock::time_point deadline{};
    std::size_t heap_index = not_in_heap;
    // Breaks ties between equal deadlines so timers fire in the order they
    // were started (the heap itself is not stable).
    std::uint64_t sequence = 0;
};

/// Min-heap on (deadline, sequence). Not thread safe: the owner locks.
/// Pushing allocates only when the vector grows, so a steady number of
/// pending timers costs no allocation per timer. Removing gives room back
/// once the heap has shrunk to a quarter of it (above 2 × kept_capacity), so a
/// storm of timers does not leave its peak behind.
class timer_heap {
public:
    /// Entries (8 bytes each) the heap may keep without trimming: a count
    /// of pending timers that stays under it never reallocates.
    static constexpr std::size_t kept_capacity = 1024;

    /// Entries allocated now.
    [[nodiscard]] std::size_t capacity() const noexcept { return nodes_.capacity(); }

    [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
    [[nodiscard]] timer_node* top() const noexcept { return nodes_.empty() ? nullptr : nodes_.front(); }

    /// Inserts `n`. Returns true if it became the earliest timer.
    bool push(timer_node* n)
    {
        assert(n->heap_index == timer_node::not_in_heap);
        n->sequence = next_sequence_++;
        nodes_.push_back(n);
        n->heap_index = nodes_.size() - 1;
        sift_up(n->heap_index);
        return n->heap_index == 0;
    }

    /// Removes and returns the earliest timer; the heap must not be empty.
    timer_node* pop() noexcept
    {
        timer_node* n = nodes_.front();
        erase(n);
        return n;
    }

    /// Removes `n` if it is in the heap. Returns false if it was not.
    bool erase(timer_node* n) noexcept
    {
        const std::size_t i = n->heap_index;
        if (i == timer_node::not_in_heap) return false;
        assert(i < nodes_.size() && nodes_[i] == n);
        const std::size_t last = nodes_.size() - 1;
        if (i != last) {
            place(i, nodes_[last]);
            nodes_.pop_back();
            // The moved node may belong above or below its new position.
            if (i > 0 && less(nodes_[i], nodes_[(i - 1) / 2])) {
                sift_up(i);
            } else {
                sift_down(i);
            }
        } else {
            nodes_.pop_back();
        }
        n->heap_index = timer_node::not_in_heap;
        // NOTE: above twice kept_capacity, not kept_capacity: a vector that
        // grew to hold kept_capacity entries may hold a little more (the
        // Microsoft STL grows by half), and that room must not be trimmed.
        if (nodes_.size() <= nodes_.capacity() / 4 && nodes_.capacity() > 2 * kept_capacity) trim();
        return true;
    }

private:
    /// Reallocates to twice the size (at least kept_capacity): room stays
    /// under 4x the pending timers (or kept_capacity), and it takes the
    /// count doubling or halving again to reallocate again. Keeps the
    /// larger vector if the smaller cannot be had.
    void trim() noexcept
    {
        try {
            std::vector<timer_node*> smaller;
            smaller.reserve((std::max)(kept_capacity, 2 * nodes_.size()));
            smaller.assign(nodes_.begin(), nodes_.end());
            nodes_.swap(smaller);
        } catch (const std::bad_alloc&) {
            // NOTE: nothing lost: the heap is unchanged, only larger than it needs.
        }
    }

    static bool less(const timer_node* a, const timer_node* b) noexcept
    {
        if (a->deadline != b->deadline) return a->deadline < b->deadline;
        return a->sequence < b->sequence;
    }

    void place(std::size_t i, timer_node* n) noexcept
    {
        nodes_[i] = n;
        n->heap_index = i;
    }

    void sift_up(std::size_t i) noexcept
    {
        timer_node* n = nodes_[i];
        while (i > 0) {
            const std::size_t parent = (i - 1) / 2;
            if (!less(n, nodes_[parent])) break;
            place(i, nodes_[parent]);
            i = parent;
        }
        place(i, n);
    }

    void sift_down(std::size_t i) noexcept
    {
        timer_node* n = nodes_[i];
        const std::size_t count = nodes_.size();
        for (;;) {
            std::size_t child = 2 * i + 1;
            if (child >= count) break;
            if (child + 1 < count && less(nodes_[child + 1], nodes_[child])) ++child;
            if (!less(nodes_[child], n)) break;
            place(i, nodes_[child]);
            i = child;
        }
        place(i, n);
    }

    std::vector<timer_node*> nodes_;
    std::uint64_t next_sequence_ = 0;
};

} // namespace detail

PORTICO_NAMESPACE_END
