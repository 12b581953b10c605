// A budget for the lines a server prints because of what its clients do:
// without one, anyone who can open connections (or send datagrams) decides
// how fast the log grows.
#pragma once

#include <chrono>
#include <cstdio>
#include <mutex>

namespace example {

/// Lets at most `lines` lines through per `window`; the lines past that are
/// counted instead of printed. The count is printed once the window has
/// passed, before the next line let through, or by flush():
///
///   (1234 lines not shown: at most 50 per 10 s)
///
/// So a flood of connections costs at most `lines` + 1 lines per window, and
/// the log still says how big it was. Use: `if (log.allow()) printf(...)`.
/// Thread safety: any number of threads at once.
class log_limiter {
public:
    using clock = std::chrono::steady_clock;

    log_limiter(unsigned lines, std::chrono::seconds window, std::FILE* out = stdout) noexcept
        : lines_(lines), window_(window), out_(out)
    {}
    log_limiter(const log_limiter&) = delete;
    log_limiter& operator=(const log_limiter&) = delete;

    /// True if the caller may print one line now.
    [[nodiscard]] bool allow() { return allow(clock::now()); }

    /// As allow(), at the time `now` (for tests).
    [[nodiscard]] bool allow(clock::time_point now)
    {
        std::lock_guard lock(mutex_);
        if (!started_ || now - window_start_ >= window_) {
            report_locked();
            started_ = true;
            window_start_ = now;
            used_ = 0;
        }
        if (used_ < lines_) {
            ++used_;
            return true;
        }
        ++suppressed_;
        return false;
    }

    /// Prints the count of lines not shown, if there are any (before exit).
    void flush()
    {
        std::lock_guard lock(mutex_);
        report_locked();
    }

private:
    void report_locked()
    {
        if (suppressed_ == 0) return;
        const auto seconds = static_cast<long long>(window_.count());
        std::fprintf(out_, "(%llu lines not shown: at most %u per %lld s)\n", suppressed_, lines_, seconds);
        suppressed_ = 0;
    }

    const unsigned lines_;
    const std::chrono::seconds window_;
    std::FILE* const out_;
    std::mutex mutex_;
    bool started_ = false;
    clock::time_point window_start_{};
    unsigned used_ = 0;
    unsigned long long suppressed_ = 0;
};

} // namespace example
