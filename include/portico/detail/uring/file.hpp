// portico: file_handle on Linux — an owned file descriptor and the
// synchronous calls on it (open, size, resize; close and cancel as a socket's).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/uring/error_map.hpp>
#include <portico/detail/uring/socket.hpp>
#include <portico/error.hpp>
#include <portico/file/file_mode.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// What a file operation needs of its file: the same as a socket operation
/// (a file and a socket operation share socket_op, as on Windows).
using file_ref = socket_ref;

/// An owned file. Every call on a closed file reports bad_state. Errors are
/// portable conditions (file_error). Thread safety: as the owning portico
/// file.
class file_handle : public descriptor {
public:
    file_handle() noexcept = default;
    /// Owns the file descriptor `native` (opened elsewhere); associate()
    /// gives it its shared state.
    explicit file_handle(std::uintptr_t native) noexcept : descriptor(static_cast<int>(native)) {}

    /// Opens `path` (close-on-exec), closing any file held before. `share`
    /// has no effect: Linux has no sharing modes, every open is shared for
    /// reading and writing (docs/design/uring.md). A directory is refused
    /// with access_denied, as on Windows. Errors: file_not_found,
    /// file_exists, access_denied, invalid_argument, no_resources.
    std::error_code open(const std::filesystem::path& path, file_access access, file_creation creation,
                         file_share /*share*/) noexcept
    {
        const int fd = ::open(path.c_str(), access_flags(access) | creation_flags(creation) | O_CLOEXEC, 0666);
        // NOTE: Linux opens a directory for reading (its reads then fail with
        // EISDIR) and refuses it for writing with EISDIR; Windows refuses
        // both with access denied, which is the portable answer.
        if (fd < 0) return errno == EISDIR ? make_error_code(errc::access_denied) : last_file_error();
        if (access == file_access::read) {
            struct stat st{};
            if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
                ::close(fd);
                return make_error_code(errc::access_denied);
            }
        }
        return adopt(fd);
    }

    /// The file's size in bytes (fstat).
    [[nodiscard]] io_result<std::uint64_t> size() const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state), 0};
        struct stat st{};
        if (::fstat(fd_, &st) != 0) return {last_file_error(), 0};
        return {{}, static_cast<std::uint64_t>(st.st_size)};
    }

    /// Sets the file's size: cuts it, or extends it with zeros (a hole where
    /// the file system can leave one).
    [[nodiscard]] io_result<void> resize(std::uint64_t bytes) const noexcept
    {
        if (!is_open()) return {make_error_code(errc::bad_state)};
        if (bytes > static_cast<std::uint64_t>(INT64_MAX)) return {make_error_code(errc::invalid_argument)};
        if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) return {last_file_error()};
        return {};
    }

private:
    static int access_flags(file_access access) noexcept
    {
        switch (access) {
        case file_access::read: return O_RDONLY;
        case file_access::write: return O_WRONLY;
        case file_access::read_write: return O_RDWR;
        }
        return O_RDONLY;
    }

    static int creation_flags(file_creation creation) noexcept
    {
        switch (creation) {
        case file_creation::open_existing: return 0;
        case file_creation::create_new: return O_CREAT | O_EXCL;
        case file_creation::create_always: return O_CREAT | O_TRUNC;
        case file_creation::open_always: return O_CREAT;
        case file_creation::truncate_existing: return O_TRUNC;
        }
        return 0;
    }
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
