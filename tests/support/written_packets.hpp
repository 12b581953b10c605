// Decoding what a packet_stream wrote to the mock stream, for the framing
// tests: the packets, and whether writers' sequences kept their order.
#pragma once

#include <portico/framing/detail/receive_ring.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace portico::test {

struct decoded_packet {
    std::uint32_t type;
    std::vector<std::byte> body;
};

/// Decodes a whole byte string; every byte must belong to a packet.
inline std::vector<decoded_packet> decode_all(const packet_format& format, const std::vector<std::byte>& bytes)
{
    detail::receive_ring ring(bytes.size() + 1);
    std::array<mutable_buffer, 2> regions;
    ring.commit(copy_into(ring.prepare(regions), bytes));
    std::vector<decoded_packet> out;
    for (;;) {
        auto [ec, p] = detail::next_packet(format, ring);
        REQUIRE_FALSE(ec);
        if (!p) break;
        out.push_back({p->type, {p->body.begin(), p->body.end()}});
        ring.consume(detail::packet_size(format, *p));
    }
    CHECK(ring.size() == 0);
    return out;
}

/// What packets with bodies {writer id, sequence} (two u32) and type = id
/// say about their writers: the next sequence expected of each, and how
/// many packets broke a writer's order.
struct writer_order {
    std::vector<std::uint32_t> next;
    std::size_t out_of_order = 0;
};

inline writer_order check_writer_order(const std::vector<decoded_packet>& packets, std::uint32_t writers)
{
    writer_order result{std::vector<std::uint32_t>(writers, 0)};
    for (const auto& p : packets) {
        REQUIRE(p.body.size() == 8);
        std::uint32_t id = 0, seq = 0;
        std::memcpy(&id, p.body.data(), 4);
        std::memcpy(&seq, p.body.data() + 4, 4);
        REQUIRE(id < writers);
        CHECK(p.type == id);
        if (seq != result.next[id]) ++result.out_of_order;
        result.next[id] = seq + 1;
    }
    return result;
}

} // namespace portico::test
