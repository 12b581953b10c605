#include <portico/detail/timer_heap.hpp>

#include "support/catch.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <set>
#include <utility>
#include <vector>

using portico::detail::timer_heap;
using portico::detail::timer_node;
using clock_type = std::chrono::steady_clock;

TEST_CASE("timer_heap pops in deadline order, ties in insertion order", "[timer_heap]")
{
    const auto t0 = clock_type::time_point{};
    std::vector<timer_node> nodes(6);
    const int offsets[] = {5, 1, 3, 1, 0, 3};
    timer_heap heap;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        nodes[i].deadline = t0 + std::chrono::milliseconds(offsets[i]);
        heap.push(&nodes[i]);
    }
    std::vector<timer_node*> popped;
    while (!heap.empty()) popped.push_back(heap.pop());
    const std::vector<timer_node*> expected = {&nodes[4], &nodes[1], &nodes[3], &nodes[2], &nodes[5], &nodes[0]};
    CHECK(popped == expected);
    for (auto& n : nodes) CHECK(n.heap_index == timer_node::not_in_heap);
}

TEST_CASE("timer_heap push reports a new earliest timer", "[timer_heap]")
{
    timer_node late, early, middle;
    late.deadline = clock_type::time_point{} + std::chrono::seconds(10);
    early.deadline = clock_type::time_point{} + std::chrono::seconds(1);
    middle.deadline = clock_type::time_point{} + std::chrono::seconds(5);
    timer_heap heap;
    CHECK(heap.push(&late));
    CHECK(heap.push(&early));
    CHECK_FALSE(heap.push(&middle));
    CHECK(heap.top() == &early);
}

TEST_CASE("timer_heap matches a reference model under random push and erase", "[timer_heap]")
{
    std::mt19937 rng(12345);
    constexpr std::size_t count = 20000;
    std::vector<timer_node> nodes(count);
    timer_heap heap;
    // Reference: ordered by (deadline, insertion sequence).
    std::set<std::pair<std::pair<long long, std::uint64_t>, timer_node*>> model;
    std::uniform_int_distribution<long long> when(0, 1000);
    std::vector<timer_node*> live;

    for (std::size_t i = 0; i < count; ++i) {
        auto& n = nodes[i];
        n.deadline = clock_type::time_point{} + std::chrono::microseconds(when(rng));
        heap.push(&n);
        model.insert({{n.deadline.time_since_epoch().count(), n.sequence}, &n});
        live.push_back(&n);
        // Every third step erase a random live timer, as cancellation does.
        if (i % 3 == 0) {
            std::uniform_int_distribution<std::size_t> pick(0, live.size() - 1);
            const std::size_t k = pick(rng);
            timer_node* victim = live[k];
            live[k] = live.back();
            live.pop_back();
            CHECK(heap.erase(victim));
            CHECK_FALSE(heap.erase(victim)); // a second erase is a no-op
            model.erase({{victim->deadline.time_since_epoch().count(), victim->sequence}, victim});
        }
    }
    REQUIRE(heap.size() == model.size());
    for (const auto& entry : model) {
        REQUIRE(heap.top() == entry.second);
        heap.pop();
    }
    CHECK(heap.empty());
}

TEST_CASE("timer_heap: a storm of timers does not leave its peak behind", "[timer_heap]")
{
    std::vector<timer_node> nodes(20'000);
    std::mt19937 random(9);
    timer_heap heap;
    for (auto& n : nodes) {
        n.deadline = clock_type::time_point{} + std::chrono::microseconds(random() % 1'000'000);
        heap.push(&n);
    }
    CHECK(heap.capacity() >= nodes.size());
    // Cancelled in random order down to 100 pending.
    std::vector<timer_node*> order;
    for (auto& n : nodes) order.push_back(&n);
    std::shuffle(order.begin(), order.end(), random);
    std::size_t erased = 0;
    for (std::size_t i = 0; i + 100 < order.size(); ++i) erased += heap.erase(order[i]) ? 1 : 0;
    CHECK(erased == nodes.size() - 100);
    CHECK(heap.size() == 100);
    CHECK(heap.capacity() <= 2 * timer_heap::kept_capacity);
    // What is left still pops in deadline order.
    auto last = clock_type::time_point::min();
    std::size_t out_of_order = 0;
    while (!heap.empty()) {
        const timer_node* n = heap.pop();
        out_of_order += n->deadline < last ? 1 : 0;
        last = n->deadline;
    }
    CHECK(out_of_order == 0);
}

TEST_CASE("timer_heap: a count of timers that stays under kept_capacity never reallocates", "[timer_heap]")
{
    std::vector<timer_node> nodes(timer_heap::kept_capacity);
    timer_heap heap;
    for (auto& n : nodes) heap.push(&n);
    const std::size_t capacity = heap.capacity();
    for (int round = 0; round < 3; ++round) {
        while (!heap.empty()) heap.pop();
        CHECK(heap.capacity() == capacity);
        for (auto& n : nodes) heap.push(&n);
        CHECK(heap.capacity() == capacity);
    }
}
