// portico: receive_ring — the receive buffer of a framed stream, and the
// sans-I/O step that cuts packets out of it (packet_stream's read side).
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/error.hpp>
#include <portico/framing/packet.hpp>
#include <portico/framing/packet_format.hpp>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// A ring of received bytes. Free space is offered as up to two buffers (the
/// rest of the ring, then its start), so one scatter read fills all of it;
/// unread bytes are read back as one contiguous view. A view that would wrap
/// past the end is made contiguous by copying only its wrapped part into a
/// mirror zone that follows the ring: at most one copy, of at most the
/// view's size.
///
/// Storage is twice the capacity (ring + mirror). The initial storage is
/// allocated by the first prepare() and kept until release() gives it back
/// (only while the ring holds nothing: an idle stream then holds no
/// buffer); grown storage is allocated by grow() and freed as soon as the
/// ring holds no unread byte, the ring going back to its initial storage
/// (so a stream that once received a large packet does not keep its room
/// while it idles; docs/design/memory.md).
/// Thread safety: none; one reader at a time.
class receive_ring {
public:
    /// A ring of `capacity` bytes (at least 1).
    /// Allocates nothing yet.
    explicit receive_ring(std::size_t capacity) noexcept
        : initial_capacity_(capacity == 0 ? 1 : capacity), capacity_(initial_capacity_)
    {}

    /// Bytes the ring can hold now.
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    /// Bytes the ring holds when not grown: the constructor's capacity.
    [[nodiscard]] std::size_t initial_capacity() const noexcept { return initial_capacity_; }
    /// Bytes of storage the ring owns: the initial ring and mirror, plus
    /// the grown ones while a large packet needs them.
    [[nodiscard]] std::size_t storage_bytes() const noexcept
    {
        return (initial_storage_ != nullptr ? 2 * initial_capacity_ : 0) +
               (grown_storage_ != nullptr ? 2 * capacity_ : 0);
    }
    /// Frees the initial storage if the ring holds nothing (not grown, no
    /// unread byte); the next prepare() allocates it again. Returns true if
    /// the ring now holds no storage.
    bool release() noexcept
    {
        if (size_ != 0 || grown_storage_ != nullptr) return false;
        initial_storage_.reset();
        storage_ = nullptr;
        head_ = 0;
        return true;
    }
    /// Unread bytes.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    /// Bytes that can still be received.
    [[nodiscard]] std::size_t free_space() const noexcept { return capacity_ - size_; }

    /// The free space as 0, 1 or 2 buffers, in stream order; receive into
    /// them, then commit() the byte count. Stays valid until commit(),
    /// consume(), grow() or release(). Allocates the initial storage if the
    /// ring has none (std::bad_alloc).
    [[nodiscard]] std::span<mutable_buffer> prepare(std::array<mutable_buffer, 2>& out)
    {
        if (storage_ == nullptr) {
            initial_storage_ = std::make_unique<std::byte[]>(2 * initial_capacity_);
            storage_ = initial_storage_.get();
        }
        std::size_t count = 0;
        const std::size_t tail = (head_ + size_) % capacity_;
        std::size_t left = free_space();
        if (left != 0) {
            const std::size_t first = (std::min)(left, capacity_ - tail);
            out[count++] = mutable_buffer(storage_ + tail, first);
            left -= first;
        }
        if (left != 0) out[count++] = mutable_buffer(storage_, left);
        return std::span(out.data(), count);
    }

    /// Marks `n` bytes received into prepare()'s buffers (n <= free_space()).
    void commit(std::size_t n) noexcept
    {
        assert(n <= free_space());
        size_ += n;
    }

    /// The first `n` unread bytes (n <= size()) as one contiguous view,
    /// valid until the next commit(), consume() or grow(). Copies only if
    /// the bytes wrap past the end of the ring, and then only the wrapped
    /// part.
    [[nodiscard]] std::span<const std::byte> peek(std::size_t n) noexcept
    {
        assert(n <= size_);
        const std::size_t to_end = capacity_ - head_;
        if (n > to_end) {
            // NOTE: the mirror zone starts right after the ring, so copying
            // the wrapped bytes there extends the run that starts at head_.
            std::memcpy(storage_ + capacity_, storage_, n - to_end);
            ++copies_;
        }
        return std::span<const std::byte>(storage_ + head_, n);
    }

    /// Copies the first dst.size() unread bytes (<= size()) into `dst`,
    /// without touching the mirror: for small reads such as a header.
    void copy_front(std::span<std::byte> dst) const noexcept
    {
        assert(dst.size() <= size_);
        const std::size_t first = (std::min)(dst.size(), capacity_ - head_);
        std::memcpy(dst.data(), storage_ + head_, first);
        std::memcpy(dst.data() + first, storage_, dst.size() - first);
    }

    /// Drops the first `n` unread bytes (n <= size()). Once none is left,
    /// a grown ring frees its grown storage and goes back to its initial
    /// storage and capacity (no allocation).
    void consume(std::size_t n) noexcept
    {
        assert(n <= size_);
        head_ = (head_ + n) % capacity_;
        size_ -= n;
        if (size_ != 0) return;
        head_ = 0; // the next read gets one contiguous region
        if (grown_storage_ != nullptr) {
            // NOTE: the only moment the grown storage can go without a copy.
            // A stream whose large packets arrive one at a time, each after
            // the ring emptied, allocates per large packet: a receive_buffer
            // that fits them avoids it.
            storage_ = initial_storage_.get();
            capacity_ = initial_capacity_;
            grown_storage_.reset();
        }
    }

    /// Makes the ring hold at least `capacity` bytes, keeping the unread
    /// ones (copied once, to the start). Allocates; call it only for a size
    /// already checked against a limit.
    void grow(std::size_t capacity)
    {
        if (capacity <= capacity_) return;
        auto bigger = std::make_unique<std::byte[]>(2 * capacity);
        if (size_ != 0) {
            const std::span<const std::byte> unread = peek(size_);
            std::memcpy(bigger.get(), unread.data(), unread.size());
        }
        grown_storage_ = std::move(bigger);
        storage_ = grown_storage_.get();
        capacity_ = capacity;
        head_ = 0;
    }

    /// How many times peek() had to copy a wrapped part (for tests and
    /// statistics).
    [[nodiscard]] std::uint64_t wrap_copies() const noexcept { return copies_; }

private:
    std::size_t initial_capacity_;
    std::size_t capacity_;
    std::unique_ptr<std::byte[]> initial_storage_;
    // Larger storage while a packet needs it; freed when the ring empties.
    std::unique_ptr<std::byte[]> grown_storage_;
    // The storage in use: one of the two above.
    std::byte* storage_ = nullptr;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::uint64_t copies_ = 0;
};

/// The sans-I/O step of read_packet(): the next whole packet at the front
/// of `ring`, or nothing if more bytes are needed. The packet's body is a
/// view into the ring, valid until the ring next changes; the ring keeps
/// the packet's bytes until the caller consume()s `header + body`
/// (packet_size()).
/// The header is checked before anything else: packet_too_large and
/// packet_malformed come as soon as the header is complete. A packet larger
/// than the ring grows it (the only allocation, after that check).
/// Thread safety: none.
[[nodiscard]] inline io_result<std::optional<packet>> next_packet(const packet_format& format, receive_ring& ring)
{
    const std::size_t header_size = format.header_size();
    if (ring.size() < header_size) return {{}, std::nullopt};
    std::array<std::byte, 8> header_bytes;
    const auto header_view = std::span(header_bytes).first(header_size);
    ring.copy_front(header_view);
    auto [ec, header] = decode_header(format, header_view);
    if (ec) return {ec, std::nullopt};
    const std::size_t whole = header_size + header.body_size;
    if (whole > ring.capacity()) ring.grow(whole);
    if (ring.size() < whole) return {{}, std::nullopt};
    const auto bytes = ring.peek(whole);
    return {{}, packet{header.type, bytes.subspan(header_size)}};
}

/// Bytes a packet returned by next_packet() occupies in the ring.
[[nodiscard]] inline std::size_t packet_size(const packet_format& format, const packet& p) noexcept
{
    return format.header_size() + p.body.size();
}

} // namespace detail

PORTICO_NAMESPACE_END
