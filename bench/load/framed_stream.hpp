// The framed packets a connection sends in the pipeline and fanout modes.
#pragma once

#include "byte_pattern.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace load {

// Packet k of connection c is a header (u16 size of the whole packet, u16
// type = k mod 2^16, both little-endian) and a body of `body_size` bytes: k as
// u64 little-endian (as much of it as fits), then the pattern from
// byte_pattern::start_of(c, k). Every packet has the same size, so the bytes at
// any offset of a connection's stream can be made again: they are generated to
// be sent and again to check what comes back, and a partial send or receive
// needs no buffer of its own.
class framed_stream {
public:
    static constexpr std::size_t header_size = 4;
    // The header and the whole sequence number, when the body holds it.
    static constexpr std::size_t full_head_size = header_size + sizeof(std::uint64_t);

    framed_stream(const byte_pattern& pattern, std::size_t body_size)
        : pattern_(pattern), packet_size_(header_size + body_size),
          head_size_(header_size + std::min<std::size_t>(body_size, sizeof(std::uint64_t)))
    {}

    std::size_t packet_size() const noexcept { return packet_size_; }

    // Calls emit(bytes, n) for consecutive pieces of the stream [offset,
    // offset + length) of `connection`, while emit returns true.
    template <class Emit>
    void visit(std::uint32_t connection, std::uint64_t offset, std::size_t length, Emit emit) const
    {
        while (length > 0) {
            const std::uint64_t k = offset / packet_size_;
            const std::size_t in_packet = offset % packet_size_;
            std::size_t n = 0;
            bool more = false;
            if (in_packet < head_size_) {
                const head h = head_of(k);
                n = std::min(length, head_size_ - in_packet);
                more = emit(h.data() + in_packet, n);
            } else {
                n = std::min(length, packet_size_ - in_packet);
                more = emit(pattern_.at(byte_pattern::start_of(connection, k)) + (in_packet - head_size_), n);
            }
            if (!more) return;
            offset += n;
            length -= n;
        }
    }

    // How many of data[0, n) equal the stream of `connection` from `offset`
    // on, before the first that does not.
    std::size_t matching(std::uint32_t connection, std::uint64_t offset, const std::uint8_t* data, std::size_t n) const
    {
        std::size_t checked = 0;
        visit(connection, offset, n, [&](const std::uint8_t* expected, std::size_t length) {
            const auto* got = data + checked;
            if (std::memcmp(got, expected, length) != 0) {
                checked += static_cast<std::size_t>(std::mismatch(got, got + length, expected).first - got);
                return false;
            }
            checked += length;
            return true;
        });
        return checked;
    }

    // The field at byte `in_packet` of a packet, to name it in a report.
    const char* field_at(std::size_t in_packet) const noexcept
    {
        if (in_packet < 2) return "size";
        if (in_packet < header_size) return "type";
        if (in_packet < head_size_) return "sequence number";
        return "body";
    }

private:
    using head = std::array<std::uint8_t, full_head_size>;

    head head_of(std::uint64_t k) const noexcept
    {
        head h{};
        h[0] = static_cast<std::uint8_t>(packet_size_);
        h[1] = static_cast<std::uint8_t>(packet_size_ >> 8);
        h[2] = static_cast<std::uint8_t>(k);
        h[3] = static_cast<std::uint8_t>(k >> 8);
        for (std::size_t i = 0; i < sizeof(std::uint64_t); ++i)
            h[header_size + i] = static_cast<std::uint8_t>(k >> (8 * i));
        return h;
    }

    const byte_pattern& pattern_;
    const std::size_t packet_size_;
    const std::size_t head_size_; // header and sequence number
};

} // namespace load
