// portico: stop_source, stop_token, stop_callback — cooperative cancellation.
//
// The same interface as C++20's <stop_token>, implemented on a mutex and a
// condition variable. Why not std::stop_token: with mingw-w64's libstdc++ 12,
// ~std::stop_callback waits for a callback running on another thread through
// a std::binary_semaphore, whose atomic-wait fallback was seen to lose the
// wake-up under Wine; the destructor then never returned (a pool thread hung
// in a cancel-racing-completion test). Cancelling an operation that is
// completing at the same moment is routine here, so that wait must be sound.
// On Linux, where C++20's atomic wait is the kernel's futex and nothing of
// that fallback is involved, the lock and the wait are two 4-byte atomics
// instead (a stream holds three stop states, and libstdc++'s mutex and
// condition variable are 88 bytes there). See docs/design/cancellation.md.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

struct stop_callback_node {
    void (*invoke)(stop_callback_node*) noexcept = nullptr;
    list_hook<stop_callback_node> hook;
    // Set while the node's own callback runs, so a callback that destroys
    // its stop_callback (legal) is noticed and not touched afterwards.
    bool* destroyed = nullptr;
};

#if defined(__linux__)
/// stop_state's lock and its wait for a running callback, on futexes: a
/// lock of three states (free, held, held with a thread asleep on it) and a
/// count of callbacks finished that a waiter sleeps on. BasicLockable.
class stop_state_lock {
public:
    void lock() noexcept
    {
        std::uint32_t free = 0;
        if (state_.compare_exchange_strong(free, 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
        // NOTE: marked as slept on before sleeping, so that unlock() wakes;
        // a thread taking it through this path leaves it marked, at the
        // cost of at most one needless wake.
        while (state_.exchange(2, std::memory_order_acquire) != 0) state_.wait(2, std::memory_order_relaxed);
    }

    void unlock() noexcept
    {
        if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
    }

    /// With the lock held through `lock`: sleeps until `done()` is true,
    /// released while asleep.
    template <class Predicate>
    void wait_finished(std::unique_lock<stop_state_lock>& lock, Predicate done) noexcept
    {
        while (!done()) {
            // RACE: read under the lock, so a callback that finishes after
            // unlock() changes the count before the wait compares it.
            const std::uint32_t seen = finished_.load(std::memory_order_relaxed);
            lock.unlock();
            finished_.wait(seen, std::memory_order_relaxed);
            lock.lock();
        }
    }

    /// With the lock held: a callback finished.
    void notify_finished() noexcept
    {
        finished_.fetch_add(1, std::memory_order_relaxed);
        finished_.notify_all();
    }

private:
    std::atomic<std::uint32_t> state_{0};
    std::atomic<std::uint32_t> finished_{0};
};
#else
/// stop_state's lock and its wait for a running callback: a mutex and a
/// condition variable. BasicLockable.
class stop_state_lock {
public:
    void lock() { mutex_.lock(); }
    void unlock() noexcept { mutex_.unlock(); }

    /// With the lock held through `lock`: sleeps until `done()` is true,
    /// released while asleep.
    template <class Predicate>
    void wait_finished(std::unique_lock<stop_state_lock>& lock, Predicate done)
    {
        // The caller's lock owns mutex_; the condition variable needs it as
        // a unique_lock of its own for the wait, and gives it back after.
        std::unique_lock<std::mutex> inner(mutex_, std::adopt_lock);
        done_.wait(inner, done);
        inner.release();
        (void)lock;
    }

    /// With the lock held: a callback finished.
    void notify_finished() noexcept { done_.notify_all(); }

private:
    std::mutex mutex_;
    std::condition_variable done_;
};
#endif

class stop_state {
public:
    [[nodiscard]] bool stop_requested() const noexcept { return requested_.load(std::memory_order_acquire); }
    [[nodiscard]] bool has_sources() const noexcept { return sources_.load(std::memory_order_acquire) != 0; }
    void add_source() noexcept { sources_.fetch_add(1, std::memory_order_relaxed); }
    void remove_source() noexcept { sources_.fetch_sub(1, std::memory_order_acq_rel); }

    /// Sets the stop flag and runs every registered callback on this thread.
    /// Returns false if stop had already been requested.
    bool request_stop() noexcept
    {
        std::unique_lock lock(lock_);
        if (requested_.load(std::memory_order_relaxed)) return false;
        requested_.store(true, std::memory_order_release);
        runner_ = std::this_thread::get_id();
        while (stop_callback_node* node = callbacks_.pop_front()) {
            bool destroyed = false;
            node->destroyed = &destroyed;
            running_ = node;
            lock.unlock();
            node->invoke(node);
            lock.lock();
            if (!destroyed) node->destroyed = nullptr;
            running_ = nullptr;
            // RACE: a destructor on another thread may be waiting for this
            // very callback to finish; wake it under the lock it waits with.
            lock_.notify_finished();
        }
        return true;
    }

    /// Registers `node`, unless stop was already requested: then returns
    /// false and the caller runs the callback itself.
    bool add(stop_callback_node* node) noexcept
    {
        std::lock_guard lock(lock_);
        if (requested_.load(std::memory_order_relaxed)) return false;
        callbacks_.push_front(*node);
        return true;
    }

    /// Deregisters `node`. If its callback is running on another thread,
    /// waits for it to finish, so the callback never outlives its object.
    void remove(stop_callback_node* node) noexcept
    {
        std::unique_lock lock(lock_);
        if (callbacks_.contains(*node)) {
            callbacks_.remove(*node);
            return;
        }
        // Out of line: the common case above stays small enough to inline.
        remove_running(node, lock);
    }

private:
    /// remove() of a node that is no longer listed: its callback ran, or
    /// runs now.
    void remove_running(stop_callback_node* node, std::unique_lock<stop_state_lock>& lock) noexcept
    {
        if (running_ != node) return;
        if (runner_ == std::this_thread::get_id()) {
            // Destroyed from inside its own callback: request_stop must not
            // touch it again.
            if (node->destroyed != nullptr) *node->destroyed = true;
            return;
        }
        lock_.wait_finished(lock, [&] { return running_ != node; });
    }

    std::atomic<bool> requested_{false};
    std::atomic<std::size_t> sources_{0};
    stop_state_lock lock_;
    intrusive_list<stop_callback_node, &stop_callback_node::hook> callbacks_;
    stop_callback_node* running_ = nullptr;
    std::thread::id runner_;
};

} // namespace detail

class stop_source;
template <class Callback>
class stop_callback;
namespace detail {
template <class Callback>
class stop_registration;
} // namespace detail

/// A view of a stop_source's state: whether stop was requested. Cheap to
/// copy (one reference count). A default-constructed token can never stop.
/// Thread safety: any thread; copies may be used concurrently.
class stop_token {
public:
    stop_token() noexcept = default;

    /// True once the owning stop_source's request_stop() was called.
    [[nodiscard]] bool stop_requested() const noexcept { return state_ && state_->stop_requested(); }
    /// False if stop can never be requested (no state, or no source left and
    /// none requested): operations then need not register callbacks.
    [[nodiscard]] bool stop_possible() const noexcept
    {
        return state_ && (state_->stop_requested() || state_->has_sources());
    }

    /// Tokens are equal when they share a state, or both have none.
    friend bool operator==(const stop_token& a, const stop_token& b) noexcept { return a.state_ == b.state_; }

private:
    friend class stop_source;
    template <class Callback>
    friend class stop_callback;
    template <class Callback>
    friend class detail::stop_registration;

    explicit stop_token(std::shared_ptr<detail::stop_state> state) noexcept : state_(std::move(state)) {}

    std::shared_ptr<detail::stop_state> state_;
};

/// Owns a stop state: request_stop() sets it and runs the callbacks
/// registered through its tokens, on the calling thread. Allocates the state
/// once. Thread safety: any thread.
class stop_source {
public:
    stop_source() : state_(std::make_shared<detail::stop_state>()) { state_->add_source(); }
    /// Shares the stop state of `other`, as one more source of it; requesting
    /// stop on either requests it on both.
    stop_source(const stop_source& other) noexcept : state_(other.state_)
    {
        if (state_) state_->add_source();
    }
    /// Takes over the stop state of `other`, which is left without one: its
    /// stop_possible() and stop_requested() are false, its request_stop() does
    /// nothing and its get_token() gives tokens that can never stop.
    stop_source(stop_source&& other) noexcept : state_(std::move(other.state_)) {}
    /// Shares (copy) or takes over (move) the stop state of `other`; the state
    /// this source had loses a source.
    stop_source& operator=(stop_source other) noexcept
    {
        std::swap(state_, other.state_);
        return *this;
    }
    ~stop_source()
    {
        if (state_) state_->remove_source();
    }

    /// A token viewing this source's stop state (a token that can never stop
    /// if the source was moved from).
    [[nodiscard]] stop_token get_token() const noexcept { return stop_token{state_}; }
    /// True once request_stop() was called on this source or on one sharing
    /// its state.
    [[nodiscard]] bool stop_requested() const noexcept { return state_ && state_->stop_requested(); }
    /// True if the source has a stop state: false only once it was moved from.
    [[nodiscard]] bool stop_possible() const noexcept { return static_cast<bool>(state_); }

    /// Requests stop and runs the registered callbacks before returning.
    /// Returns false if stop had already been requested.
    bool request_stop() noexcept { return state_ && state_->request_stop(); }

private:
    std::shared_ptr<detail::stop_state> state_;
};

/// Runs `callback` when stop is requested on `token` — at once, in the
/// constructor, if it already was. The destructor deregisters it and, if the
/// callback is running on another thread, waits for it to finish. Neither
/// copyable nor movable. Thread safety: as std::stop_callback.
template <class Callback>
class stop_callback : private detail::stop_callback_node {
public:
    /// Stores a Callback made from `callback` and registers it with the stop
    /// state of `token`. If stop was already requested, runs it here, on the
    /// calling thread, before returning; with a token that can never stop, it
    /// never runs. Throws only what constructing the Callback throws.
    template <class C>
        requires std::is_constructible_v<Callback, C>
    explicit stop_callback(const stop_token& token, C&& callback) noexcept(std::is_nothrow_constructible_v<Callback, C>)
        : callback_(std::forward<C>(callback))
    {
        invoke = &stop_callback::run;
        if (!token.state_) return;
        if (token.state_->add(this)) {
            state_ = token.state_;
        } else if (token.state_->stop_requested()) {
            callback_();
        }
    }

    stop_callback(const stop_callback&) = delete;
    stop_callback& operator=(const stop_callback&) = delete;

    ~stop_callback()
    {
        if (state_) state_->remove(this);
    }

private:
    static void run(detail::stop_callback_node* node) noexcept { static_cast<stop_callback*>(node)->callback_(); }

    Callback callback_;
    std::shared_ptr<detail::stop_state> state_;
};

template <class Callback>
stop_callback(stop_token, Callback) -> stop_callback<Callback>;

namespace detail {

/// A stop_callback that holds no reference to the stop state: for an
/// awaiter whose awaiting coroutine's promise holds the token, which
/// outlives the awaiter (it lives in that coroutine's frame, and a frame's
/// locals go before its promise). Saves the reference count's two atomic
/// operations per registration on the hot path of every socket operation.
/// Otherwise as stop_callback.
template <class Callback>
class stop_registration : private stop_callback_node {
public:
    /// Registers `callback` with the state of `token`, which must outlive
    /// this object; runs it at once if stop was already requested.
    stop_registration(const stop_token& token, Callback callback) noexcept : callback_(std::move(callback))
    {
        static_assert(std::is_nothrow_move_constructible_v<Callback>);
        invoke = &stop_registration::run;
        stop_state* const state = token.state_.get();
        if (state == nullptr) return;
        if (state->add(this)) {
            state_ = state;
        } else if (state->stop_requested()) {
            callback_();
        }
    }

    stop_registration(const stop_registration&) = delete;
    stop_registration& operator=(const stop_registration&) = delete;

    ~stop_registration()
    {
        if (state_ != nullptr) state_->remove(this);
    }

private:
    static void run(stop_callback_node* node) noexcept { static_cast<stop_registration*>(node)->callback_(); }

    Callback callback_;
    stop_state* state_ = nullptr;
};

} // namespace detail

PORTICO_NAMESPACE_END
