#include <portico/detail/intrusive_list.hpp>

#include "support/catch.hpp"

#include <vector>

using portico::detail::intrusive_list;
using portico::detail::intrusive_queue;
using portico::detail::list_hook;

namespace {

// One node in two lists at once, through two hooks, plus a queue link.
struct node {
    explicit node(int v) noexcept : value(v) {}
    int value;
    list_hook<node> by_age;
    list_hook<node> by_name;
    node* next = nullptr;
};

using age_list = intrusive_list<node, &node::by_age>;
using name_list = intrusive_list<node, &node::by_name>;
using node_queue = intrusive_queue<node, &node::next>;

template <class List>
std::vector<int> values(List& list)
{
    std::vector<int> out;
    list.drain([&](node& n) { out.push_back(n.value); });
    return out;
}

} // namespace

TEST_CASE("intrusive_list keeps order and removes from anywhere", "[intrusive_list]")
{
    node a(1), b(2), c(3), d(4);
    age_list list;
    CHECK(list.empty());
    list.push_back(b);
    list.push_back(c);
    list.push_front(a);
    list.push_back(d);
    CHECK(list.front() == &a);
    CHECK(list.back() == &d);
    CHECK(list.contains(c));

    list.remove(c); // middle
    CHECK_FALSE(list.contains(c));
    list.remove(a); // head
    list.remove(d); // tail
    CHECK(list.front() == &b);
    CHECK(list.back() == &b);
    CHECK(list.contains(b)); // the only node: no predecessor, but the head
    list.remove(b);
    CHECK(list.empty());
    CHECK(list.back() == nullptr);
    CHECK_FALSE(list.contains(b));
    CHECK(b.by_age.next == nullptr);
    CHECK(b.by_age.prev == nullptr);
}

TEST_CASE("intrusive_list: one node sits in two lists through two hooks", "[intrusive_list]")
{
    node a(1), b(2), c(3);
    age_list ages;
    name_list names;
    for (node* n : {&a, &b, &c}) ages.push_back(*n);
    for (node* n : {&c, &a, &b}) names.push_back(*n);
    ages.remove(a);
    CHECK(names.contains(a));
    CHECK(values(names) == std::vector<int>{3, 1, 2});
    CHECK(values(ages) == std::vector<int>{2, 3});
}

TEST_CASE("intrusive_list pop_front and drain take nodes out before handing them over", "[intrusive_list]")
{
    node a(1), b(2), c(3);
    age_list list;
    for (node* n : {&a, &b, &c}) list.push_back(*n);
    CHECK(list.pop_front() == &a);
    CHECK_FALSE(list.contains(a));
    age_list other;
    // drain hands each node over already unlinked, so it may go elsewhere.
    list.drain([&](node& n) { other.push_front(n); });
    CHECK(list.empty());
    CHECK(values(other) == std::vector<int>{3, 2});
    CHECK(list.pop_front() == nullptr);
}

TEST_CASE("intrusive_list moves leave the source empty", "[intrusive_list]")
{
    node a(1), b(2);
    age_list list;
    list.push_back(a);
    list.push_back(b);
    age_list moved(std::move(list));
    CHECK(list.empty());
    CHECK(moved.contains(a));
    age_list assigned;
    assigned = std::move(moved);
    CHECK(moved.empty());
    CHECK(values(assigned) == std::vector<int>{1, 2});
}

TEST_CASE("intrusive_queue is first in, first out and splices whole queues", "[intrusive_list]")
{
    node a(1), b(2), c(3), d(4), e(5);
    node_queue q;
    CHECK(q.pop_front() == nullptr);
    q.push_back(b);
    q.push_back(c);
    q.push_front(a);
    node_queue tail;
    tail.push_back(d);
    tail.push_back(e);
    q.append(std::move(tail));
    CHECK(tail.empty());
    q.append(node_queue{}); // appending nothing changes nothing
    CHECK(q.front() == &a);
    CHECK(values(q) == std::vector<int>{1, 2, 3, 4, 5});
    CHECK(a.next == nullptr);
    CHECK(e.next == nullptr);

    // push_front on an empty queue sets the tail too: a push_back follows it.
    q.push_front(c);
    q.push_back(d);
    CHECK(values(q) == std::vector<int>{3, 4});
}
