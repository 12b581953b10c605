#include <portico/detail/timer_heap.hpp>

#include "support/catch.hpp"

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
