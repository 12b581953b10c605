// portico: a thread of its own for the system calls whose work Wine does in
// the thread that made them (TransmitFile; docs/design/files.md).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>

#include <atomic>
#include <coroutine>
#include <mutex>
#include <system_error>
#include <thread>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// True when the process runs under Wine (its ntdll exports
/// wine_get_version, which Windows' does not).
inline bool running_under_wine() noexcept
{
    static const bool wine = [] {
        const HMODULE ntdll = ::GetModuleHandleW(L"ntdll.dll");
        return ntdll != nullptr && ::GetProcAddress(ntdll, "wine_get_version") != nullptr;
    }();
    return wine;
}

/// A thread that resumes the coroutines handed to it, one after another,
/// and otherwise waits on a completion port of its own.
///
/// Why: Wine carries out an overlapped TransmitFile in system APCs of the
/// thread that made the call, which that thread runs while it waits, 64 KiB
/// at a time until the socket is full; a pool thread that makes the call is
/// copying the file instead of serving completions. Made from this thread,
/// the copy keeps it busy and no pool thread. The call's completion still
/// reaches the context's port, so the coroutine continues on the pool.
///
/// Started on first use; a context that sends no file never has the thread.
/// Any thread may hand it work.
class issue_lane {
public:
    /// Called on the lane after each coroutine it resumed returns to it.
    using done_fn = void (*)(void* context) noexcept;

    issue_lane(done_fn done, void* context) noexcept : done_(done), context_(context) {}
    issue_lane(const issue_lane&) = delete;
    issue_lane& operator=(const issue_lane&) = delete;

    /// Lets the thread finish what it was handed, then joins it.
    ~issue_lane()
    {
        if (thread_.joinable()) {
            // NOTE: key 0 is never a coroutine's address: the thread ends
            // there, after everything posted before it.
            ::PostQueuedCompletionStatus(port_, 0, 0, nullptr);
            thread_.join();
        }
        if (port_ != nullptr) ::CloseHandle(port_);
    }

    /// Hands `h` to the lane, starting it if needed. False if the lane
    /// cannot run (no port, no thread, the post refused): the caller goes on
    /// where it is.
    bool post(std::coroutine_handle<> h) noexcept
    {
        if (!running_.load(std::memory_order_acquire) && !start()) return false;
        return ::PostQueuedCompletionStatus(port_, 0, reinterpret_cast<ULONG_PTR>(h.address()), nullptr) != FALSE;
    }

    /// True on the lane's thread.
    [[nodiscard]] static bool on_lane() noexcept { return current_; }

private:
    bool start() noexcept
    {
        std::lock_guard lock(mutex_);
        if (running_.load(std::memory_order_relaxed)) return true;
        if (port_ == nullptr) port_ = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
        if (port_ == nullptr) return false;
        try {
            thread_ = std::thread([this] { main(); });
        } catch (const std::system_error&) {
            return false;
        }
        running_.store(true, std::memory_order_release);
        return true;
    }

    void main() noexcept
    {
        current_ = true;
        for (;;) {
            DWORD bytes = 0;
            ULONG_PTR key = 0;
            OVERLAPPED* overlapped = nullptr;
            // NOTE: a wait through the wineserver, where Wine runs the system
            // APCs that copy the file (they need no alertable wait).
            if (!::GetQueuedCompletionStatus(port_, &bytes, &key, &overlapped, INFINITE)) continue;
            if (key == 0) return;
            std::coroutine_handle<>::from_address(reinterpret_cast<void*>(key)).resume();
            done_(context_);
        }
    }

    static inline thread_local bool current_ = false;

    const done_fn done_;
    void* const context_;
    std::mutex mutex_;
    std::atomic<bool> running_{false};
    HANDLE port_ = nullptr;
    std::thread thread_;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
