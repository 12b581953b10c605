// portico: the calls behind the file awaiters — ReadFile and WriteFile at an
// offset, and TransmitFile, the socket call that sends a file — each made in
// start(), where socket_op decides who resumes (see file.hpp: file and
// socket operations share it). The public awaiters (file/random_access_file.hpp,
// net/tcp_socket.hpp) derive from these and add what does not depend on the
// system: when to complete at once, and what the result means.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/win/error_map.hpp>
#include <portico/detail/win/extensions.hpp>
#include <portico/detail/win/file.hpp>
#include <portico/detail/win/socket.hpp>
#include <portico/detail/win/socket_op.hpp>
#include <portico/detail/win/windows.hpp>
#include <portico/io_statistics.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

// NOTE, for every start() below: it is the call site. Once the call returns
// pending, another thread may complete this op; socket_op::await_suspend
// decides who resumes, and start() touches nothing after the call.

/// The most bytes one ReadFile or WriteFile moves (its length is 32-bit);
/// read_all_at/write_all_at loop over larger buffers.
inline constexpr std::size_t max_file_transfer = std::size_t{1} << 30;

/// The most file bytes one TransmitFile sends: its documented limit is
/// 2,147,483,646 per call; tcp_socket::transmit_file makes one call per GiB.
inline constexpr std::uint64_t max_transmit_file_bytes = std::uint64_t{1} << 30;

/// The largest head or tail buffer of a TransmitFile (32-bit lengths).
inline constexpr std::size_t max_transmit_buffer = 0xFFFFFFFFu;

/// One ReadFile or WriteFile at an offset, into or from the first non-empty
/// buffer of a sequence (the calls take one buffer: see docs/design/files.md
/// for why not ReadFileScatter), at most max_file_transfer bytes of it.
template <class Derived, class Buffer>
class file_transfer_op : public socket_op<Derived> {
public:
    template <class Sequence>
    file_transfer_op(const file_ref& file, std::uint64_t offset, const Sequence& buffers) noexcept
        : socket_op<Derived>(file), offset_(offset)
    {
        bool found = false;
        for_each_buffer<Buffer>(buffers, [&](const Buffer& b) {
            if (found || b.size() == 0) return;
            found = true;
            data_ = b.data();
            requested_ = (std::min)(b.size(), max_file_transfer);
        });
    }

protected:
    /// The error the operation ended with, as a file error (eof at the end
    /// of the file, disk_full...).
    [[nodiscard]] std::error_code error() const noexcept { return as_file_error(this->error_); }

    /// What start() returns for a call that `succeeded` or not: 0 (with the
    /// byte count of an immediate success in `bytes`), or the thread's last
    /// error (ERROR_IO_PENDING for a pending call).
    DWORD file_call_result(bool succeeded, DWORD& bytes) noexcept
    {
        if (!succeeded) return ::GetLastError();
        // NOTE: ReadFile/WriteFile's own count is documented as unreliable
        // with an OVERLAPPED, so none is asked for; an immediate success
        // left its count here before the call returned.
        bytes = static_cast<DWORD>(this->InternalHigh);
        return 0;
    }

    /// The offset goes in the OVERLAPPED, which a move before the start
    /// clears: so it is set here, at the start, not at construction.
    void set_offset() noexcept
    {
        this->Offset = static_cast<DWORD>(offset_);
        this->OffsetHigh = static_cast<DWORD>(offset_ >> 32);
    }

    /// Bytes asked for (0 when every buffer is empty).
    std::size_t requested_ = 0;
    std::uint64_t offset_;
    std::conditional_t<std::is_same_v<Buffer, mutable_buffer>, void*, const void*> data_ = nullptr;
};

/// One ReadFile at an offset.
class file_read_op : public file_transfer_op<file_read_op, mutable_buffer> {
public:
    using file_transfer_op::file_transfer_op;

private:
    friend class socket_op<file_read_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::file_read_calls);
        set_offset();
        return file_call_result(::ReadFile(reinterpret_cast<HANDLE>(socket_.handle), data_,
                                           static_cast<DWORD>(requested_), nullptr, this) != FALSE,
                                bytes);
    }
};

/// One WriteFile at an offset.
class file_write_op : public file_transfer_op<file_write_op, const_buffer> {
public:
    using file_transfer_op::file_transfer_op;

private:
    friend class socket_op<file_write_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::file_write_calls);
        set_offset();
        return file_call_result(::WriteFile(reinterpret_cast<HANDLE>(socket_.handle), data_,
                                            static_cast<DWORD>(requested_), nullptr, this) != FALSE,
                                bytes);
    }
};

/// One TransmitFile: `head`, then `count` bytes of `file` from `offset`, then
/// `tail`, sent on the socket (count at most max_transmit_file_bytes; with
/// 0, no file is passed and only head and tail go). The file is read by the
/// system, not through the file's port: only the socket's completion comes.
class transmit_file_op : public socket_op<transmit_file_op> {
public:
    transmit_file_op(const socket_ref& socket, const file_ref& file, std::uint64_t offset, std::uint64_t count,
                     const_buffer head, const_buffer tail) noexcept
        : socket_op(socket), file_(static_cast<std::uintptr_t>(file.handle)), offset_(offset),
          count_(static_cast<DWORD>(count)), head_(head), tail_(tail)
    {
        requested_ = static_cast<std::uint64_t>(head.size()) + count_ + tail.size();
    }

protected:
    /// The error the call ended with: the socket's (connection_reset...), or
    /// the file's as file_error() maps it.
    [[nodiscard]] std::error_code error() const noexcept { return as_file_error(error_); }

    /// Bytes the call should send: head, file bytes, tail.
    std::uint64_t requested_ = 0;

private:
    friend class socket_op<transmit_file_op>;
    static constexpr bool message_size_is_a_warning = false;

    DWORD start(DWORD& bytes) noexcept
    {
        socket_.sched->count(counter::transmit_file_calls);
        Offset = static_cast<DWORD>(offset_);
        OffsetHigh = static_cast<DWORD>(offset_ >> 32);
        // NOTE: the system reads the buffers' description while the call is
        // pending, so it lives in this op, in the awaiting frame.
        buffers_.Head = const_cast<void*>(head_.data());
        buffers_.HeadLength = static_cast<DWORD>(head_.size());
        buffers_.Tail = const_cast<void*>(tail_.data());
        buffers_.TailLength = static_cast<DWORD>(tail_.size());
        const bool any_buffer = head_.size() != 0 || tail_.size() != 0;
        HANDLE file = count_ == 0 ? nullptr : reinterpret_cast<HANDLE>(file_);
        if (extensions().transmit_file(socket_.handle, file, count_, 0, this, any_buffer ? &buffers_ : nullptr, 0)) {
            bytes = static_cast<DWORD>(InternalHigh);
            return 0;
        }
        return static_cast<DWORD>(::WSAGetLastError());
    }

    std::uintptr_t file_;
    std::uint64_t offset_;
    DWORD count_;
    const_buffer head_;
    const_buffer tail_;
    TRANSMIT_FILE_BUFFERS buffers_{};
};

} // namespace detail::win

PORTICO_NAMESPACE_END
