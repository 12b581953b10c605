// portico: the io_uring requests behind the file awaiters on Linux — a read
// and a write at an offset — filled in prepare(), where socket_op submits
// them and decides who resumes (file and socket operations share it, as on
// Windows); and transmit_file_op, which sends a file on a socket with reads
// and sends of its own. The public awaiters (file/random_access_file.hpp,
// net/tcp_socket.hpp) derive from these and add what the result means.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/uring/error_map.hpp>
#include <portico/detail/uring/file.hpp>
#include <portico/detail/uring/socket.hpp>
#include <portico/detail/uring/socket_op.hpp>
#include <portico/detail/uring/socket_ops.hpp>
#include <portico/error.hpp>
#include <portico/io_statistics.hpp>

#include <algorithm>
#include <array>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <type_traits>
#include <utility>

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

/// The most file bytes one transmit_file_op sends (as on Windows, where it
/// is one TransmitFile call); tcp_socket::transmit_file makes one op per GiB.
inline constexpr std::uint64_t max_transmit_file_bytes = std::uint64_t{1} << 30;

/// The largest head or tail of one transmit_file_op (as on Windows, whose
/// lengths are 32-bit).
inline constexpr std::size_t max_transmit_buffer = 0xFFFFFFFFu;

/// The file bytes one read of a transmit moves, then sent: 256 KiB (the
/// bounce buffer; docs/design/uring.md, "Sending a file", measures it). A
/// transmit of at most small_transmit_buffer file bytes uses a buffer of
/// that size instead, which keeps its frame small enough to be recycled.
inline constexpr std::size_t transmit_buffer = std::size_t{256} << 10;
inline constexpr std::size_t small_transmit_buffer = 2048;

/// One transmit: `head`, then `count` bytes of `file` from `offset`
/// (at most max_transmit_file_bytes), then `tail`, sent on the socket, as
/// one TransmitFile is on Windows. Linux has no such request, so the op runs
/// a loop of its own (transmit_loop): a read of the file into a buffer in
/// the loop's frame, then a send of it, gathered with the head before the
/// first block and the tail after the last, until everything went. Each read
/// and send is an ordinary socket_op (file_read_op, stream_send_op), so the
/// stop token, close() and the thread rules of every other operation apply
/// to each step. Counted once in transmit_file_calls (and each step in
/// file_read_calls and send_calls).
///
/// An awaiter base, as the IOCP backend's: the awaiter above it supplies
/// await_ready (requested_ == 0) and await_resume (error(), bytes_,
/// requested_). Movable until awaited (with_timeout takes it by value).
class transmit_file_op {
public:
    transmit_file_op(const socket_ref& socket, const file_ref& file, std::uint64_t offset, std::uint64_t count,
                     const_buffer head, const_buffer tail) noexcept
        : requested_(static_cast<std::uint64_t>(head.size()) + count + tail.size()), socket_(socket), file_(file),
          offset_(offset), count_(count), head_(head), tail_(tail)
    {
        assert(count <= max_transmit_file_bytes);
    }

    transmit_file_op(const transmit_file_op&) = delete;
    transmit_file_op& operator=(const transmit_file_op&) = delete;
    /// Moves an op that was not awaited yet.
    transmit_file_op(transmit_file_op&& other) noexcept
        : requested_(other.requested_), socket_(other.socket_), file_(other.file_), offset_(other.offset_),
          count_(other.count_), head_(other.head_), tail_(other.tail_)
    {
        assert(!other.loop_.valid() && "moving a transmit_file_op that was already started");
    }
    transmit_file_op& operator=(transmit_file_op&&) = delete;

    /// Destroyed while its loop is suspended in a step: the loop's frame goes
    /// with it, and the pending step's op keeps that frame's block (and the
    /// buffer in it, which the kernel may still be writing) until its
    /// completion, as any operation in a destroyed frame does (socket_op).
    ~transmit_file_op() = default;

    /// Starts the loop, which inherits the awaiting coroutine's stop token
    /// and resumes it when done. NOTE: a coroutine handle, not a bool: the
    /// frame-write bug that keeps the IOCP awaiters on bool is MSVC's, and
    /// this backend is Linux only; the transfer keeps a long chain of steps
    /// that complete inline off the stack.
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        socket_.sched->count(counter::transmit_file_calls);
        // Only a transfer whose blocks fit the small buffer gets it: the
        // frame then comes from the frame cache (steady-state transmits of
        // small files allocate nothing); a larger one's frame (256 KiB)
        // comes from the heap, one allocation per op.
        loop_ = count_ <= small_transmit_buffer ? transmit_loop<small_transmit_buffer>(*this)
                                                : transmit_loop<transmit_buffer>(*this);
        auto& promise = loop_.handle().promise();
        promise.set_stop_token(detail::stop_token_of(awaiting));
        promise.set_continuation(awaiting);
        return loop_.handle();
    }

protected:
    /// The error the transmit ended with: the socket's (connection_reset...),
    /// or the file's as file_error() maps it.
    [[nodiscard]] std::error_code error() const noexcept { return as_file_error(error_); }

    std::error_code error_;
    /// Bytes sent: head, file bytes, tail.
    std::uint64_t bytes_ = 0;
    /// Bytes the op should send: head, file bytes, tail.
    std::uint64_t requested_ = 0;

private:
    /// One read of the loop, resuming with {error, bytes}.
    struct read_step : file_read_op {
        using file_read_op::file_read_op;
        bool await_ready() const noexcept { return requested_ == 0; }
        io_result<std::size_t> await_resume() const noexcept { return {error(), bytes_}; }
    };

    /// One send of the loop, gathering what is left of head, block and tail.
    struct send_step : stream_send_op<3> {
        using stream_send_op::stream_send_op;
        bool await_ready() const noexcept { return requested_ == 0; }
        io_result<std::size_t> await_resume() const noexcept { return {error_, bytes_}; }
    };

    /// Holds a reference to a descriptor's shared state for the loop's life
    /// (close() drops the descriptor's own), and tells whether it was closed.
    class state_hold {
    public:
        explicit state_hold(socket_state* state) noexcept : state_(state)
        {
            if (state_ != nullptr) state_->acquire();
        }
        state_hold(const state_hold&) = delete;
        state_hold& operator=(const state_hold&) = delete;
        ~state_hold()
        {
            if (state_ != nullptr) state_->release();
        }
        [[nodiscard]] bool closed() const noexcept
        {
            if (state_ == nullptr) return false;
            std::lock_guard lock(*state_);
            return state_->closed;
        }

    private:
        socket_state* state_;
    };

    /// The transfer: read a block, send it (with the head before the first
    /// and the tail after the last), until the count is sent; the result
    /// goes to the op, which outlives the loop unless destroyed mid-way (then
    /// this frame is destroyed too, and never resumes).
    template <std::size_t BufferSize>
    static task<void> transmit_loop(transmit_file_op& self)
    {
        const state_hold socket_hold(self.socket_.state);
        const state_hold file_hold(self.file_.state);
        std::array<unsigned char, BufferSize> block;
        std::uint64_t offset = self.offset_;
        std::uint64_t left = self.count_;
        const_buffer head = self.head_;
        std::uint64_t sent = 0;
        std::error_code failed;
        for (;;) {
            std::size_t got = 0;
            if (left != 0) {
                if (file_hold.closed()) {
                    failed = make_error_code(errc::operation_aborted);
                    break;
                }
                const std::size_t want = static_cast<std::size_t>((std::min<std::uint64_t>)(left, block.size()));
                auto [read_ec, n] = co_await read_step(self.file_, offset, mutable_buffer(block.data(), want));
                if (read_ec) {
                    failed = read_ec;
                    break;
                }
                // NOTE: 0 bytes: the file shrank since its size was read.
                // What went is reported, fewer than requested_ (eof above).
                if (n == 0) break;
                got = n;
                offset += n;
                left -= n;
            }
            const bool last = left == 0;
            // Head before the first block, tail after the last: one send for
            // a small file, in as many as it takes otherwise.
            std::array<const_buffer, 3> parts{head, const_buffer(block.data(), got),
                                              last ? self.tail_ : const_buffer{}};
            head = {};
            while (!failed && (parts[0].size() != 0 || parts[1].size() != 0 || parts[2].size() != 0)) {
                // NOTE: a socket closed between two steps ends the loop here:
                // its descriptor's number may already belong to another file.
                if (socket_hold.closed()) {
                    failed = make_error_code(errc::operation_aborted);
                    break;
                }
                auto [send_ec, n] = co_await send_step(self.socket_, parts);
                sent += n;
                failed = send_ec;
                for (const_buffer& part : parts) {
                    const std::size_t taken = (std::min)(n, part.size());
                    part += taken;
                    n -= taken;
                }
            }
            if (failed || last) break;
        }
        self.error_ = failed;
        self.bytes_ = sent;
    }

    socket_ref socket_;
    file_ref file_;
    std::uint64_t offset_;
    std::uint64_t count_;
    const_buffer head_;
    const_buffer tail_;
    task<void> loop_;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END
