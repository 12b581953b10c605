// portico: the io_uring requests behind the file awaiters on Linux — a read
// and a write at an offset — filled in prepare(), where socket_op submits
// them and decides who resumes (file and socket operations share it, as on
// Windows). The public awaiters (file/random_access_file.hpp) derive from
// these and add what the result means.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/uring/error_map.hpp>
#include <portico/detail/uring/file.hpp>
#include <portico/detail/uring/socket_op.hpp>
#include <portico/io_statistics.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// The most bytes one read or write moves (as on Windows, whose calls take
/// 32-bit lengths); read_all_at/write_all_at loop over larger buffers.
inline constexpr std::size_t max_file_transfer = std::size_t{1} << 30;

/// One read or write at an offset, into or from the first non-empty buffer
/// of a sequence, at most max_file_transfer bytes of it.
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
    /// The error the operation ended with, as a file error.
    [[nodiscard]] std::error_code error() const noexcept { return as_file_error(this->error_); }

    void prepare_transfer(io_uring_sqe& sqe, std::uint8_t opcode) noexcept
    {
        sqe.opcode = opcode;
        sqe.fd = this->socket_.handle;
        sqe.addr = reinterpret_cast<std::uintptr_t>(data_);
        sqe.len = static_cast<std::uint32_t>(requested_);
        sqe.off = offset_;
    }

    /// Bytes asked for (0 when every buffer is empty).
    std::size_t requested_ = 0;
    std::uint64_t offset_;
    std::conditional_t<std::is_same_v<Buffer, mutable_buffer>, void*, const void*> data_ = nullptr;
};

/// One read at an offset.
class file_read_op : public file_transfer_op<file_read_op, mutable_buffer> {
public:
    using file_transfer_op::file_transfer_op;

private:
    friend class socket_op<file_read_op>;
    static constexpr counter call_counter = counter::file_read_calls;
    void prepare(io_uring_sqe& sqe) noexcept { prepare_transfer(sqe, IORING_OP_READ); }
};

/// One write at an offset.
class file_write_op : public file_transfer_op<file_write_op, const_buffer> {
public:
    using file_transfer_op::file_transfer_op;

private:
    friend class socket_op<file_write_op>;
    static constexpr counter call_counter = counter::file_write_calls;
    void prepare(io_uring_sqe& sqe) noexcept { prepare_transfer(sqe, IORING_OP_WRITE); }
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
