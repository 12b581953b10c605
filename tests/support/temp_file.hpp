// Test files in the system's temporary directory, deleted afterwards, the
// content the file tests write, and a named pipe whose reads stay pending
// until the test writes: the one kind of file a test can keep an operation
// pending on (a disk file's reads finish at once). Windows and Linux.
#pragma once

#include <portico/config.hpp>
#if PORTICO_BACKEND_IOCP
#include <portico/detail/win/windows.hpp>
#else
#include <fcntl.h>
#include <unistd.h>
#endif

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace portico::test {

/// Byte `i` of the file tests' content: position-dependent and not periodic
/// in any buffer size (nor in 4 GiB), so a byte read from the wrong offset
/// shows.
inline char content_byte(std::uint64_t i) { return static_cast<char>((i * 7 + (i >> 12) * 13 + (i >> 32)) & 0xFF); }

/// Bytes `from` to `from + n` of the content.
inline std::vector<char> content(std::uint64_t from, std::size_t n)
{
    std::vector<char> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = content_byte(from + i);
    return out;
}

/// A unique path in the temporary directory; the file there, if any, is
/// deleted when this goes.
class temp_file {
public:
    explicit temp_file(const std::wstring& tag = L"file")
    {
        static std::atomic<unsigned> counter{0};
#if PORTICO_BACKEND_IOCP
        wchar_t dir[MAX_PATH + 1];
        const DWORD n = ::GetTempPathW(MAX_PATH + 1, dir);
        if (n == 0 || n > MAX_PATH) throw std::runtime_error("GetTempPathW failed");
        path_ = std::filesystem::path(std::wstring(dir, n)) /
                (L"portico-" + tag + L"-" + std::to_wstring(::GetCurrentProcessId()) + L"-" +
                 std::to_wstring(counter.fetch_add(1)) + L".bin");
#else
        path_ = std::filesystem::temp_directory_path() / (L"portico-" + tag + L"-" + std::to_wstring(::getpid()) +
                                                          L"-" + std::to_wstring(counter.fetch_add(1)) + L".bin");
#endif
        remove(); // a leftover of a crashed run
    }
    temp_file(const temp_file&) = delete;
    temp_file& operator=(const temp_file&) = delete;
    ~temp_file() { remove(); }

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    void remove() noexcept
    {
#if PORTICO_BACKEND_IOCP
        ::DeleteFileW(path_.c_str());
#else
        ::unlink(path_.c_str());
#endif
    }

    std::filesystem::path path_;
};

/// Marks the file at `path` sparse (FSCTL_SET_SPARSE), so that a write far
/// past its end does not make the file system write the gap: Windows' NTFS
/// allocates and zeroes it otherwise. Best effort: Linux file systems (also
/// under Wine) leave holes anyway, so on Linux it only creates the file.
inline void make_sparse(const std::filesystem::path& path)
{
#if PORTICO_BACKEND_IOCP
    HANDLE h = ::CreateFileW(path.c_str(), GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr,
                             OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h == INVALID_HANDLE_VALUE) throw std::system_error(static_cast<int>(::GetLastError()), std::system_category());
    DWORD returned = 0;
    // FSCTL_SET_SPARSE, from <winioctl.h> (which WIN32_LEAN_AND_MEAN leaves out).
    constexpr DWORD set_sparse = 0x000900C4;
    (void)::DeviceIoControl(h, set_sparse, nullptr, 0, nullptr, 0, &returned, nullptr);
    ::CloseHandle(h);
#else
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw std::system_error(errno, std::system_category());
    ::close(fd);
#endif
}

#if PORTICO_BACKEND_IOCP
/// A named pipe: the server end is ours (synchronous, written and closed by
/// the test), the client end is handed out as an overlapped handle for a
/// random_access_file to assign(). Reads on the client end stay pending
/// until the test writes.
class pipe_pair {
public:
    pipe_pair()
    {
        static std::atomic<unsigned> counter{0};
        name_ = L"\\\\.\\pipe\\portico-test-" + std::to_wstring(::GetCurrentProcessId()) + L"-" +
                std::to_wstring(counter.fetch_add(1));
        server_ = ::CreateNamedPipeW(name_.c_str(), PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT,
                                     1, 64 * 1024, 64 * 1024, 0, nullptr);
        if (server_ == INVALID_HANDLE_VALUE) throw std::runtime_error("CreateNamedPipeW failed");
        client_ = ::CreateFileW(name_.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                                FILE_FLAG_OVERLAPPED, nullptr);
        if (client_ == INVALID_HANDLE_VALUE) {
            ::CloseHandle(server_);
            throw std::runtime_error("CreateFileW on the pipe failed");
        }
        // Connected already: this returns ERROR_PIPE_CONNECTED at once.
        (void)::ConnectNamedPipe(server_, nullptr);
    }
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
    ~pipe_pair()
    {
        close_server();
        if (client_ != INVALID_HANDLE_VALUE) ::CloseHandle(client_);
    }

    /// The client end, for random_access_file::assign(), which then owns it.
    std::uintptr_t take_client() noexcept
    {
        return reinterpret_cast<std::uintptr_t>(std::exchange(client_, INVALID_HANDLE_VALUE));
    }

    /// Writes `n` bytes into the pipe from the server end.
    void write(const void* data, DWORD n)
    {
        DWORD written = 0;
        if (!::WriteFile(server_, data, n, &written, nullptr) || written != n) {
            throw std::runtime_error("WriteFile on the pipe failed");
        }
    }

    /// Closes the server end: the client's reads then see the pipe broken.
    void close_server() noexcept
    {
        if (server_ != INVALID_HANDLE_VALUE) ::CloseHandle(std::exchange(server_, INVALID_HANDLE_VALUE));
    }

private:
    std::wstring name_;
    HANDLE server_ = INVALID_HANDLE_VALUE;
    HANDLE client_ = INVALID_HANDLE_VALUE;
};
#else
/// A pipe: the write end (the "server") is ours, written and closed by the
/// test; the read end (the "client") is handed out for a random_access_file
/// to assign(). Reads on the client end stay pending until the test writes.
class pipe_pair {
public:
    pipe_pair()
    {
        int ends[2];
        if (::pipe2(ends, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2");
        client_ = ends[0];
        server_ = ends[1];
    }
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
    ~pipe_pair()
    {
        close_server();
        if (client_ >= 0) ::close(client_);
    }

    /// The read end, for random_access_file::assign(), which then owns it.
    std::uintptr_t take_client() noexcept { return static_cast<std::uintptr_t>(std::exchange(client_, -1)); }

    /// Writes `n` bytes into the pipe from the write end.
    void write(const void* data, std::size_t n)
    {
        if (::write(server_, data, n) != static_cast<ssize_t>(n)) {
            throw std::runtime_error("write on the pipe failed");
        }
    }

    /// Closes the write end: the client's reads then see the end of the pipe.
    void close_server() noexcept
    {
        if (server_ >= 0) ::close(std::exchange(server_, -1));
    }

private:
    int server_ = -1;
    int client_ = -1;
};
#endif

} // namespace portico::test
