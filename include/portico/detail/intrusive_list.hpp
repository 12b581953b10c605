// portico: intrusive lists and queues — nodes link themselves, nothing is
// allocated.
//
// The links are members of the node, named by a member pointer, so one node
// type can sit in two lists at once through two links (unifex's
// intrusive_queue does the same with a member pointer to `next`). No list
// locks: its owner guards it.
#pragma once

#include <portico/config.hpp>

#include <cassert>
#include <cstddef>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The links of a node in an intrusive_list. A node is in at most one list
/// through a given hook; the list resets the links when it lets the node go.
template <class T>
struct list_hook {
    T* next = nullptr;
    T* prev = nullptr;
};

/// The two ends every intrusive list keeps, and moving them: a moved-from
/// list is empty; assigning over a list that still holds nodes is a bug.
template <class T>
class list_ends {
public:
    list_ends() noexcept = default;
    list_ends(const list_ends&) = delete;
    list_ends& operator=(const list_ends&) = delete;
    list_ends(list_ends&& other) noexcept
        : head_(std::exchange(other.head_, nullptr)), tail_(std::exchange(other.tail_, nullptr))
    {}
    list_ends& operator=(list_ends&& other) noexcept
    {
        assert(empty() && "assigning over a list that still holds nodes");
        head_ = std::exchange(other.head_, nullptr);
        tail_ = std::exchange(other.tail_, nullptr);
        return *this;
    }

    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
    [[nodiscard]] T* front() const noexcept { return head_; }

    /// Calls f(node) for every node, front to back, taking each out of the
    /// list before f sees it (so f may destroy it or put it in another list).
    template <class List, class F>
    static void drain(List& list, F f)
    {
        while (T* node = list.pop_front()) f(*node);
    }

protected:
    ~list_ends() = default;

    T* head_ = nullptr;
    T* tail_ = nullptr;
};

/// A doubly linked list of T through the hook `Hook`: O(1) push at both ends,
/// pop at the front, and removal of any node. Empty lists cost two pointers.
template <class T, list_hook<T> T::* Hook>
class intrusive_list : public list_ends<T> {
    using list_ends<T>::head_;
    using list_ends<T>::tail_;

public:
    intrusive_list() noexcept = default; // not an aggregate: list_ends is not for direct use
    [[nodiscard]] T* back() const noexcept { return tail_; }

    /// True if `node` is in this list. O(1): a linked node has a predecessor
    /// or is the head, because links are reset on the way out.
    [[nodiscard]] bool contains(const T& node) const noexcept { return (node.*Hook).prev != nullptr || head_ == &node; }

    void push_back(T& node) noexcept
    {
        assert(!contains(node) && "node already in the list");
        (node.*Hook).next = nullptr;
        (node.*Hook).prev = tail_;
        if (tail_ != nullptr) {
            (tail_->*Hook).next = &node;
        } else {
            head_ = &node;
        }
        tail_ = &node;
    }

    void push_front(T& node) noexcept
    {
        assert(!contains(node) && "node already in the list");
        (node.*Hook).prev = nullptr;
        (node.*Hook).next = head_;
        if (head_ != nullptr) {
            (head_->*Hook).prev = &node;
        } else {
            tail_ = &node;
        }
        head_ = &node;
    }

    /// Removes and returns the first node, or null if empty.
    T* pop_front() noexcept
    {
        T* node = head_;
        if (node != nullptr) remove(*node);
        return node;
    }

    /// Removes `node`, which must be in this list.
    void remove(T& node) noexcept
    {
        assert(contains(node) && "removing a node that is not in the list");
        auto& hook = node.*Hook;
        if (hook.prev != nullptr) {
            (hook.prev->*Hook).next = hook.next;
        } else {
            head_ = hook.next;
        }
        if (hook.next != nullptr) {
            (hook.next->*Hook).prev = hook.prev;
        } else {
            tail_ = hook.prev;
        }
        hook.next = hook.prev = nullptr;
    }

    /// Takes every node out, front to back, and calls f(node) on each (see
    /// list_ends::drain).
    template <class F>
    void drain(F f)
    {
        list_ends<T>::drain(*this, std::move(f));
    }
};

/// A singly linked FIFO of T through the member `Next`: O(1) push at either
/// end, pop at the front and splicing of a whole queue. No removal from the
/// middle (use intrusive_list for that).
template <class T, T* T::* Next>
class intrusive_queue : public list_ends<T> {
    using list_ends<T>::head_;
    using list_ends<T>::tail_;

public:
    intrusive_queue() noexcept = default; // not an aggregate: list_ends is not for direct use
    void push_back(T& node) noexcept
    {
        node.*Next = nullptr;
        if (tail_ != nullptr) {
            tail_->*Next = &node;
        } else {
            head_ = &node;
        }
        tail_ = &node;
    }

    void push_front(T& node) noexcept
    {
        node.*Next = head_;
        head_ = &node;
        if (tail_ == nullptr) tail_ = &node;
    }

    /// Removes and returns the first node, or null if empty.
    T* pop_front() noexcept
    {
        T* node = head_;
        if (node == nullptr) return nullptr;
        head_ = std::exchange(node->*Next, nullptr);
        if (head_ == nullptr) tail_ = nullptr;
        return node;
    }

    /// Moves every node of `other` to the back of this queue, in order.
    void append(intrusive_queue&& other) noexcept
    {
        if (other.empty()) return;
        if (tail_ != nullptr) {
            tail_->*Next = other.head_;
        } else {
            head_ = other.head_;
        }
        tail_ = other.tail_;
        other.head_ = other.tail_ = nullptr;
    }

    /// Takes every node out, front to back, and calls f(node) on each.
    template <class F>
    void drain(F f)
    {
        list_ends<T>::drain(*this, std::move(f));
    }
};

} // namespace detail

PORTICO_NAMESPACE_END
