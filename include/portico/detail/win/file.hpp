// portico: file_handle — an owned file HANDLE opened for overlapped I/O, and
// the synchronous calls on it (open, associate, size, resize, cancel, close).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/socket.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/error.hpp>
#include <portico/file/file_mode.hpp>
#include <portico/io_statistics.hpp>

#include <cstdint>
#include <filesystem>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// What a file operation needs of its file: the port, the handle, whether an
/// immediate success queues a packet. File operations are started, cancelled
/// and completed by the same code as socket operations (socket_op: nothing in
/// it is particular to sockets but the name), so this is a socket_ref whose
/// handle is the file's HANDLE. A closed file's INVALID_HANDLE_VALUE is the
/// same value as INVALID_SOCKET, which is how socket_op sees a closed handle.
using file_ref = socket_ref;

// INVALID_HANDLE_VALUE is (HANDLE)(LONG_PTR)-1, all bits set (a pointer, so
// it cannot appear in a constant expression); so must INVALID_SOCKET be.
static_assert(INVALID_SOCKET == ~SOCKET{0}, "a closed file must look like a closed socket to socket_op");

/// An owned file handle, opened with FILE_FLAG_OVERLAPPED: closed by the
/// destructor, moved, never copied. Every call on a closed handle reports
/// bad_state. Errors are portable conditions (file_error). Thread safety: as
/// the owning random_access_file.
class file_handle {
public:
    file_handle() noexcept = default;
    /// Takes ownership of the handle `native` (a HANDLE as an integer), which
    /// must have been opened for overlapped I/O and not yet associated with
    /// any port.
    explicit file_handle(std::uintptr_t native) noexcept : h_(reinterpret_cast<HANDLE>(native)) {}
    file_handle(const file_handle&) = delete;
    file_handle& operator=(const file_handle&) = delete;
    file_handle(file_handle&& other) noexcept
        : h_(std::exchange(other.h_, INVALID_HANDLE_VALUE)), skips_(std::exchange(other.skips_, false))
    {}
    file_handle& operator=(file_handle&& other) noexcept
    {
        if (this != &other) {
            close();
            h_ = std::exchange(other.h_, INVALID_HANDLE_VALUE);
            skips_ = std::exchange(other.skips_, false);
        }
        return *this;
    }
    ~file_handle() { close(); }

    /// Opens `path` for overlapped I/O (CreateFileW: the path is UTF-16 on
    /// Windows), closing any file held before. Errors: file_not_found,
    /// file_exists, access_denied, file_in_use, invalid_argument,
    /// no_resources.
    std::error_code open(const std::filesystem::path& path, file_access access, file_creation creation,
                         file_share share) noexcept
    {
        HANDLE h = ::CreateFileW(path.c_str(), access_flags(access), share_flags(share), nullptr,
                                 creation_disposition(creation), FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OVERLAPPED, nullptr);
        if (h == INVALID_HANDLE_VALUE) return last_file_error();
        *this = file_handle(reinterpret_cast<std::uintptr_t>(h));
        return {};
    }

    /// Associates the file with `sched`'s port; with `skip_on_success`, also
    /// asks that a call that succeeds at once queue no packet. Unlike for
    /// sockets that is always safe: the concern about layered providers
    /// without IFS handles is Winsock's. On error the file is closed.
    std::error_code associate(scheduler& sched, bool skip_on_success) noexcept
    {
        if (auto ec = sched.associate(h_)) {
            close();
            return as_file_error(ec);
        }
        skips_ =
            skip_on_success && ::SetFileCompletionNotificationModes(h_, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                                            FILE_SKIP_SET_EVENT_ON_HANDLE) != FALSE;
        return {};
    }

    [[nodiscard]] bool is_open() const noexcept { return h_ != INVALID_HANDLE_VALUE; }
    [[nodiscard]] HANDLE get() const noexcept { return h_; }
    [[nodiscard]] std::uintptr_t native() const noexcept { return reinterpret_cast<std::uintptr_t>(h_); }
    [[nodiscard]] file_ref ref(scheduler& sched) const noexcept
    {
        return {&sched, reinterpret_cast<SOCKET>(h_), skips_};
    }

    /// Gives up ownership without closing.
    HANDLE release() noexcept
    {
        skips_ = false;
        return std::exchange(h_, INVALID_HANDLE_VALUE);
    }

    /// Closes the file. Pending operations complete with operation_aborted
    /// (or with their result, if the system finished them first).
    /// Idempotent.
    void close() noexcept
    {
        if (!is_open()) return;
        // NOTE: cancelled first, so that what closing does to a pending
        // operation is the same everywhere: Windows cancels it, but Wine ends
        // a pipe read with "pipe broken" (eof) when its own handle closes.
        ::CancelIoEx(h_, nullptr);
        ::CloseHandle(release());
    }

    /// Asks every pending operation on the file to complete with
    /// operation_aborted (CancelIoEx). The file stays open.
    void cancel(scheduler& sched) const noexcept
    {
        if (!is_open()) return;
        sched.count(counter::cancel_calls);
        ::CancelIoEx(h_, nullptr);
    }

    /// The file's size in bytes (GetFileSizeEx).
    [[nodiscard]] io_result<std::uint64_t> size() const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state), 0};
        LARGE_INTEGER size{};
        if (!::GetFileSizeEx(h_, &size)) return {last_file_error(), 0};
        return {{}, static_cast<std::uint64_t>(size.QuadPart)};
    }

    /// Sets the file's size: cuts it, or extends it with zeros (without
    /// writing them where the file system can leave a hole).
    [[nodiscard]] io_result<void> resize(std::uint64_t bytes) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        if (bytes > static_cast<std::uint64_t>(INT64_MAX)) return {make_error_code(errc::invalid_argument)};
        FILE_END_OF_FILE_INFO end{};
        end.EndOfFile.QuadPart = static_cast<LONGLONG>(bytes);
        if (!::SetFileInformationByHandle(h_, FileEndOfFileInfo, &end, sizeof end)) return {last_file_error()};
        return {};
    }

private:
    static DWORD access_flags(file_access access) noexcept
    {
        switch (access) {
        case file_access::read: return GENERIC_READ;
        case file_access::write: return GENERIC_WRITE;
        case file_access::read_write: return GENERIC_READ | GENERIC_WRITE;
        }
        return 0;
    }

    static DWORD share_flags(file_share share) noexcept
    {
        switch (share) {
        case file_share::none: return 0;
        case file_share::read: return FILE_SHARE_READ;
        case file_share::write: return FILE_SHARE_WRITE;
        case file_share::read_write: return FILE_SHARE_READ | FILE_SHARE_WRITE;
        }
        return 0;
    }

    static DWORD creation_disposition(file_creation creation) noexcept
    {
        switch (creation) {
        case file_creation::open_existing: return OPEN_EXISTING;
        case file_creation::create_new: return CREATE_NEW;
        case file_creation::create_always: return CREATE_ALWAYS;
        case file_creation::open_always: return OPEN_ALWAYS;
        case file_creation::truncate_existing: return TRUNCATE_EXISTING;
        }
        return OPEN_EXISTING;
    }

    HANDLE h_ = INVALID_HANDLE_VALUE;
    bool skips_ = false;
};

} // namespace detail::win

PORTICO_NAMESPACE_END
