// A countdown latch on std::mutex + std::condition_variable.
//
// NOTE: std::latch is not used in portico's tests. With mingw-w64's
// libstdc++ 12 (no futex, so atomic wait falls back to a waiter pool) a
// count_down() racing a wait() was seen to lose its wake-up under Wine:
// the waiter slept forever with the count at zero.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace portico::test {

class latch {
public:
    explicit latch(std::ptrdiff_t count) : count_(count) {}

    void count_down()
    {
        std::lock_guard lock(mutex_);
        if (--count_ == 0) cv_.notify_all();
    }

    bool try_wait()
    {
        std::lock_guard lock(mutex_);
        return count_ == 0;
    }

    void wait()
    {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return count_ == 0; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::ptrdiff_t count_;
};

} // namespace portico::test
