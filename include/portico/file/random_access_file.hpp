// portico: random_access_file — a file read and written at offsets, its
// operations completed by the io_context's port like a socket's.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/detail/backend.hpp>
#include <portico/error.hpp>
#include <portico/file/file_mode.hpp>
#include <portico/io_context.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// A count meaning "from the offset to the end of the file"
/// (tcp_socket::transmit_file).
inline constexpr std::uint64_t to_end_of_file = (std::numeric_limits<std::uint64_t>::max)();

/// Awaiter of random_access_file::read_some_at(): one read at an offset into
/// the first non-empty buffer of a sequence (at most 1 GiB of it). Yields
/// io_result<size_t>: the bytes read, fewer than asked when the file ends
/// first; eof when the offset is at or past the end of the file (0 bytes),
/// or a pipe's writer is gone; a zero-length read completes at once with 0
/// and no error. Errors: operation_aborted (cancelled, closed, stop
/// requested), access_denied (not opened for reading), no_resources...
/// Never allocates.
///
/// Like every portico operation it is an awaiter: made by the file's member,
/// then `co_await`ed once. It may be moved until it is awaited (when_all and
/// with_timeout take awaitables by value), never after: the system holds it
/// while the operation is pending. The memory of the buffers must outlive
/// the operation.
class [[nodiscard]] read_some_at_op : public detail::backend::file_read_op {
public:
    /// Made by random_access_file::read_some_at(): reads at `offset` into the
    /// first non-empty buffer of `buffers`.
    template <class Sequence>
    read_some_at_op(const detail::backend::file_ref& file, std::uint64_t offset, const Sequence& buffers) noexcept
        : file_read_op(file, offset, buffers)
    {}

    /// Completes at once when the buffers are empty.
    bool await_ready() const noexcept { return requested_ == 0; }
    /// The io_result<size_t> described above.
    io_result<std::size_t> await_resume() const noexcept
    {
        const std::error_code ec = error();
        // A handle that reports the end as a 0-byte success (not an overlapped
        // disk file) means the same as ERROR_HANDLE_EOF.
        if (!ec && bytes_ == 0 && requested_ != 0) return {make_error_code(errc::eof), 0};
        return {ec, bytes_};
    }
};

/// Awaiter of random_access_file::write_some_at(): one write at an offset
/// from the first non-empty buffer of a sequence (at most 1 GiB of it).
/// Yields io_result<size_t>: the bytes written; a zero-length write completes
/// at once. A write past the end extends the file (the gap reads as zeros).
/// Errors: disk_full, access_denied (not opened for writing),
/// operation_aborted... Never allocates. See read_some_at_op for what every
/// file awaiter shares.
class [[nodiscard]] write_some_at_op : public detail::backend::file_write_op {
public:
    /// Made by random_access_file::write_some_at(): writes at `offset` from
    /// the first non-empty buffer of `buffers`.
    template <class Sequence>
    write_some_at_op(const detail::backend::file_ref& file, std::uint64_t offset, const Sequence& buffers) noexcept
        : file_write_op(file, offset, buffers)
    {}

    /// Completes at once when the buffers are empty.
    bool await_ready() const noexcept { return requested_ == 0; }
    /// The io_result<size_t> described above.
    io_result<std::size_t> await_resume() const noexcept { return {error(), bytes_}; }
};

class tcp_socket;

/// A file read and written at explicit offsets, with its operations
/// completed by the context's completion port: no pool thread waits for the
/// disk. Opened for overlapped I/O (FILE_FLAG_OVERLAPPED on Windows) and
/// associated with the context's port; an operation that the system finishes
/// at once (on Windows, most buffered reads, served from the cache) resumes
/// inline when the context allows it, like a socket's.
///
/// Each read or write moves one buffer: the first non-empty one of the
/// sequence given (the system's calls take one). read_all_at() and
/// write_all_at() loop over every buffer and over short transfers.
///
/// Move-only (a move leaves the source closed on the same context;
/// move-assigning closes the target first). Closing or destroying it asks
/// pending operations to stop: each resumes once, with operation_aborted or,
/// if the system had already finished it, with its result.
///
/// Errors of the synchronous members: bad_state on a closed file, otherwise
/// the system's error as a portable condition (file_not_found, file_exists,
/// access_denied, file_in_use, disk_full, invalid_argument, no_resources).
///
/// Thread safety: any number of operations may be pending at once, from any
/// threads (each carries its own offset); other members must not race with
/// each other or with starting operations.
class random_access_file {
public:
    /// The platform's file handle as an integer (a HANDLE on Windows).
    using native_handle_type = std::uintptr_t;

    /// A file not yet open, on `ctx`; open() or assign() opens it.
    explicit random_access_file(io_context& ctx) noexcept : ctx_(&ctx) {}
    random_access_file(const random_access_file&) = delete;
    random_access_file& operator=(const random_access_file&) = delete;
    /// Takes over the file of `other`, which is left closed on the same
    /// context.
    random_access_file(random_access_file&& other) noexcept = default;
    /// Closes this file, then takes over the file of `other`.
    random_access_file& operator=(random_access_file&& other) noexcept = default;
    /// Closes the file.
    ~random_access_file() = default;

    /// Opens `path` with `access`, creating or emptying it as `creation`
    /// says, and letting other handles `share` it; associates it with the
    /// context. Errors: bad_state if already open; file_not_found,
    /// file_exists, access_denied (also for a directory), file_in_use,
    /// invalid_argument (a name the system rejects), no_resources.
    io_result<void> open(const std::filesystem::path& path, file_access access,
                         file_creation creation = file_creation::open_existing, file_share share = file_share::read)
    {
        if (is_open()) return {make_error_code(errc::bad_state)};
        detail::backend::file_handle fresh;
        if (auto ec = fresh.open(path, access, creation, share)) return {ec};
        return {adopt(std::move(fresh))};
    }

    /// Takes ownership of an open file handle, which must have been opened
    /// for overlapped I/O (FILE_FLAG_OVERLAPPED) and not be associated with a
    /// completion port yet, and associates it with the context; a file
    /// already open here is closed first. On error the handle is closed and
    /// this file stays as it was. Errors: from the association.
    io_result<void> assign(native_handle_type native) { return {adopt(detail::backend::file_handle(native))}; }

    /// True between a successful open() or assign() and close().
    [[nodiscard]] bool is_open() const noexcept { return handle_.is_open(); }

    /// Closes the file; pending operations resume with operation_aborted (or
    /// their result, if the system finished them first). Idempotent.
    void close() noexcept { handle_.close(); }

    /// Asks every pending operation on this file to finish with
    /// operation_aborted. The file stays open.
    void cancel() noexcept { handle_.cancel(scheduler()); }

    /// The file's size in bytes.
    [[nodiscard]] io_result<std::uint64_t> size() const noexcept { return handle_.size(); }

    /// Cuts the file to `bytes`, or extends it with zeros to that size (the
    /// file system may leave the new part unallocated). Needs write access.
    io_result<void> resize(std::uint64_t bytes) noexcept { return handle_.resize(bytes); }

    /// Reads at `offset` into the first non-empty buffer of a sequence. See
    /// read_some_at_op for the result.
    template <class Sequence>
        requires mutable_buffer_sequence<Sequence>
    [[nodiscard]] read_some_at_op read_some_at(std::uint64_t offset, const Sequence& buffers) noexcept
    {
        return read_some_at_op{ref(), offset, buffers};
    }

    /// Writes at `offset` from the first non-empty buffer of a sequence. See
    /// write_some_at_op for the result.
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] write_some_at_op write_some_at(std::uint64_t offset, const Sequence& buffers) noexcept
    {
        return write_some_at_op{ref(), offset, buffers};
    }

    /// Reads from `offset` until every buffer is full or the file ends.
    /// Yields the bytes read and, if they are fewer, why: eof when the file
    /// ended first, or the error that stopped it. Allocates one frame
    /// (recycled).
    template <class Sequence>
        requires mutable_buffer_sequence<Sequence>
    [[nodiscard]] task<io_result<std::size_t>> read_all_at(std::uint64_t offset, Sequence buffers)
    {
        return transfer_all<mutable_buffer>(offset, std::move(buffers), [this](std::uint64_t at, mutable_buffer next) {
            return read_some_at(at, next);
        });
    }

    /// Writes every byte from `offset` on, looping over buffers and short
    /// writes. Yields the bytes written and the error that stopped it early
    /// (eof if the system took nothing, as a pipe with no reader may).
    /// Allocates one frame (recycled).
    template <class Sequence>
        requires const_buffer_sequence<Sequence>
    [[nodiscard]] task<io_result<std::size_t>> write_all_at(std::uint64_t offset, Sequence buffers)
    {
        return transfer_all<const_buffer>(offset, std::move(buffers), [this](std::uint64_t at, const_buffer next) {
            return write_some_at(at, next);
        });
    }

    /// The system's file handle, as an integer (no platform types in
    /// portico's signatures); the invalid value when closed.
    [[nodiscard]] native_handle_type native_handle() const noexcept { return handle_.native(); }

    /// The context the file's operations complete on.
    [[nodiscard]] io_context& context() const noexcept { return *ctx_; }

private:
    std::error_code adopt(detail::backend::file_handle fresh) noexcept
    {
        if (auto ec = fresh.associate(scheduler(), scheduler().skip_completion_on_success())) return ec;
        handle_ = std::move(fresh);
        return {};
    }

    [[nodiscard]] detail::backend::scheduler& scheduler() const noexcept
    {
        return detail::context_access::scheduler(*ctx_);
    }

    // transmit_file() hands the file's ref() to its operation.
    friend class tcp_socket;

    [[nodiscard]] detail::backend::file_ref ref() const noexcept { return handle_.ref(scheduler()); }

    // The loop behind read_all_at() and write_all_at(): one buffer per call,
    // resuming after each short transfer where it stopped.
    template <class Buffer, class Sequence, class Start>
    static task<io_result<std::size_t>> transfer_all(std::uint64_t offset, Sequence buffers, Start start)
    {
        buffer_cursor<Buffer, Sequence> cursor(buffers);
        std::size_t done = 0;
        while (!cursor.empty()) {
            std::array<Buffer, 1> next;
            (void)cursor.prepare(std::span(next));
            auto [ec, n] = co_await start(offset + done, next[0]);
            done += n;
            cursor.consume(n);
            if (ec) co_return io_result<std::size_t>{ec, done};
            // A write the system took nothing of (reads report that as eof
            // already) would loop forever.
            if (n == 0) co_return io_result<std::size_t>{make_error_code(errc::eof), done};
        }
        co_return io_result<std::size_t>{{}, done};
    }

    io_context* ctx_;
    detail::backend::file_handle handle_;
};

PORTICO_NAMESPACE_END
