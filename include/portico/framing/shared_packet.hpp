// portico: shared_packet — a packet encoded once and sent to many streams.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/error.hpp>
#include <portico/framing/packet_format.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// An encoded packet (header and body in one block) shared by reference
/// count: make() allocates and copies the body once, then every
/// packet_stream::queue_packet(shared) or write_packet(shared) sends those
/// same bytes, so a broadcast to N sessions costs no copy per session. The bytes are immutable; the
/// block is freed when the last shared_packet and the last write using it
/// are gone.
///
/// Thread safety: copies may be used and destroyed concurrently on any
/// threads (the count is atomic); one object is not assigned concurrently.
class shared_packet {
    struct block {
        std::atomic<std::size_t> refs;
        std::size_t size;
        packet_format format;
        std::uint32_t type;

        std::byte* bytes() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
    };

public:
    /// Heap bytes a packet's block takes beside its encoded bytes (the
    /// reference count, size, format and type). packet_stream's send queue
    /// counts it against its watermark for each queued shared packet.
    static constexpr std::size_t overhead = sizeof(block);

    /// An empty packet (no block); writing it is invalid_argument.
    shared_packet() noexcept = default;

    /// Encodes a packet of `type` with the bytes of `body` in `format`.
    /// `body` is a buffer, a sequence of buffers (gathered in order), or
    /// anything buffer() accepts (a std::string, a vector or span of bytes),
    /// but not a string literal, whose terminating '\0' would be encoded
    /// too: pass std::string_view("...") (a compile-time refusal, see
    /// detail::character_array). Errors (and no allocation): packet_too_large if the whole packet
    /// exceeds format.largest_packet(); invalid_argument if `type` does not
    /// fit the type field or the format is not valid(). Throws std::bad_alloc.
    template <class Body>
        requires(!detail::character_array<Body>) &&
                (const_buffer_sequence<Body> || requires(const Body& b) { const_buffer(buffer(b)); })
    [[nodiscard]] static io_result<shared_packet> make(const packet_format& format, std::uint32_t type,
                                                       const Body& body)
    {
        if constexpr (const_buffer_sequence<Body>) {
            return encode(format, type, body);
        } else {
            return encode(format, type, const_buffer(buffer(body)));
        }
    }

    /// Shares the block of `other` (one more reference; the bytes are not
    /// copied).
    shared_packet(const shared_packet& other) noexcept : block_(other.block_)
    {
        if (block_ != nullptr) block_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    /// Takes over the reference of `other`, which is left empty.
    shared_packet(shared_packet&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
    /// Shares (copy) or takes over (move) the block of `other`; the block this
    /// held is freed if that was its last reference.
    shared_packet& operator=(shared_packet other) noexcept
    {
        std::swap(block_, other.block_);
        return *this;
    }
    ~shared_packet() { release(); }

    /// True if it holds a packet.
    [[nodiscard]] explicit operator bool() const noexcept { return block_ != nullptr; }
    /// The whole encoded packet, header first (empty if there is none).
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept
    {
        return block_ == nullptr ? std::span<const std::byte>{}
                                 : std::span<const std::byte>(block_->bytes(), block_->size);
    }
    /// The body alone.
    [[nodiscard]] std::span<const std::byte> body() const noexcept
    {
        return block_ == nullptr ? std::span<const std::byte>{} : bytes().subspan(block_->format.header_size());
    }
    /// The packet's type.
    [[nodiscard]] std::uint32_t type() const noexcept { return block_ == nullptr ? 0 : block_->type; }
    /// The format it was encoded in (a default format if empty).
    [[nodiscard]] packet_format format() const noexcept { return block_ == nullptr ? packet_format{} : block_->format; }
    /// How many shared_packets (and pending writes) share the block: 0 if
    /// empty. A snapshot, for tests and diagnostics.
    [[nodiscard]] std::size_t use_count() const noexcept
    {
        return block_ == nullptr ? 0 : block_->refs.load(std::memory_order_relaxed);
    }

private:
    explicit shared_packet(block* b) noexcept : block_(b) {}

    template <class Sequence>
    static io_result<shared_packet> encode(const packet_format& format, std::uint32_t type, const Sequence& body)
    {
        const std::size_t body_size = buffer_size(body);
        std::array<std::byte, 8> header{};
        auto [ec, header_size] = encode_header(format, type, body_size, header);
        if (ec) return {ec, {}};
        void* memory = ::operator new(sizeof(block) + header_size + body_size);
        auto* b = ::new (memory) block{{1}, header_size + body_size, format, type};
        std::byte* out = b->bytes();
        std::memcpy(out, header.data(), header_size);
        out += header_size;
        detail::for_each_buffer<const_buffer>(body, [&](const const_buffer& part) {
            if (part.size() == 0) return;
            std::memcpy(out, part.data(), part.size());
            out += part.size();
        });
        return {{}, shared_packet(b)};
    }

    void release() noexcept
    {
        // NOTE: acq_rel so that the last owner sees every other owner's use
        // of the bytes finished before it frees them.
        if (block_ != nullptr && block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            block_->~block();
            ::operator delete(block_);
        }
        block_ = nullptr;
    }

    block* block_ = nullptr;
};

namespace detail {

/// Why `packet` cannot go out on a stream of `format`: invalid_argument if
/// it is empty or its header layout differs, packet_too_large if it exceeds
/// the format's largest packet; no error if it can.
[[nodiscard]] inline std::error_code shared_packet_mismatch(const packet_format& format,
                                                            const shared_packet& packet) noexcept
{
    const packet_format theirs = packet.format();
    if (!packet || theirs.size_bytes != format.size_bytes || theirs.type_bytes != format.type_bytes ||
        theirs.order != format.order || theirs.size_includes_header != format.size_includes_header) {
        return make_error_code(errc::invalid_argument);
    }
    if (packet.bytes().size() > format.largest_packet()) return make_error_code(errc::packet_too_large);
    return {};
}

} // namespace detail

PORTICO_NAMESPACE_END
