#include <portico/framing/detail/receive_ring.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"
#include "support/heap_counter.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

using portico::byte_order;
using portico::errc;
using portico::packet_format;
using portico::detail::receive_ring;

namespace {

struct sent_packet {
    std::uint32_t type;
    std::vector<std::byte> body;
};

/// `count` packets with random types and body sizes (mostly small, some up
/// to the format's largest), and their encoding as one byte stream.
std::vector<sent_packet> random_packets(const packet_format& f, std::size_t count, std::mt19937& random,
                                        std::vector<std::byte>& stream)
{
    std::vector<sent_packet> packets;
    const std::size_t largest_body = std::min<std::size_t>(f.largest_packet() - f.header_size(), 5000);
    for (std::size_t i = 0; i < count; ++i) {
        sent_packet p;
        p.type = f.type_bytes == 0 ? 0 : static_cast<std::uint32_t>(random() % (f.type_bytes == 1 ? 256u : 65536u));
        const std::size_t size = i % 50 == 0 ? random() % (largest_body + 1) : random() % 64;
        for (std::size_t b = 0; b < size; ++b) p.body.push_back(static_cast<std::byte>(random()));
        std::byte header[8];
        auto [ec, n] = portico::encode_header(f, p.type, size, header);
        REQUIRE_FALSE(ec);
        stream.insert(stream.end(), header, header + n);
        stream.insert(stream.end(), p.body.begin(), p.body.end());
        packets.push_back(std::move(p));
    }
    return packets;
}

/// Feeds `stream` into a ring in chunks chosen by `next_chunk` (through
/// prepare/commit, like a scatter read) and decodes everything.
template <class NextChunk>
std::vector<sent_packet> decode_in_chunks(const packet_format& f, const std::vector<std::byte>& stream,
                                          std::size_t ring_capacity, NextChunk next_chunk)
{
    receive_ring ring(ring_capacity);
    std::vector<sent_packet> got;
    std::size_t fed = 0;
    std::error_code failure;
    for (;;) {
        // Drain every whole packet first, as read_packet() would. (Plain
        // checks in the loop: a Catch assertion per byte is slow.)
        for (;;) {
            auto [ec, p] = portico::detail::next_packet(f, ring);
            if (ec) failure = ec;
            if (ec || !p) break;
            got.push_back({p->type, std::vector<std::byte>(p->body.begin(), p->body.end())});
            ring.consume(portico::detail::packet_size(f, *p));
        }
        if (fed == stream.size()) break;
        std::array<portico::mutable_buffer, 2> regions;
        const std::size_t want = std::min<std::size_t>(next_chunk(), stream.size() - fed);
        const std::size_t put = portico::test::copy_into(ring.prepare(regions), std::span(stream).subspan(fed, want));
        if (put == 0 || failure) break;
        ring.commit(put);
        fed += put;
    }
    CHECK_FALSE(failure);
    CHECK(fed == stream.size());
    CHECK(ring.size() == 0);
    return got;
}

bool same(const std::vector<sent_packet>& a, const std::vector<sent_packet>& b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i].type != b[i].type || a[i].body != b[i].body) return false;
    }
    return true;
}

} // namespace

TEST_CASE("1,000 random packets decode the same whatever the read sizes, in every format", "[receive_ring]")
{
    for (const packet_format& f : portico::test::all_packet_formats()) {
        INFO("size " << f.size_bytes << ", type " << f.type_bytes << ", big " << (f.order == byte_order::big)
                     << ", includes header " << f.size_includes_header);
        std::mt19937 random(42);
        std::vector<std::byte> stream;
        const auto sent = random_packets(f, 1000, random, stream);
        // A small ring (grown on demand by large packets) wraps often.
        const auto whole = decode_in_chunks(f, stream, 256, [&] { return stream.size(); });
        CHECK(same(whole, sent));
        for (std::size_t chunk : {1u, 2u, 3u, 7u}) {
            INFO("chunk " << chunk);
            CHECK(same(decode_in_chunks(f, stream, 256, [&] { return chunk; }), sent));
        }
        std::mt19937 sizes(7);
        CHECK(same(decode_in_chunks(f, stream, 256, [&] { return 1 + sizes() % 700; }), sent));
    }
}

TEST_CASE("a header split at every offset decodes the same", "[receive_ring]")
{
    const packet_format f;
    std::mt19937 random(3);
    std::vector<std::byte> stream;
    const auto sent = random_packets(f, 20, random, stream);
    for (std::size_t first = 0; first <= f.header_size(); ++first) {
        bool first_chunk = true;
        const auto got = decode_in_chunks(f, stream, 64, [&] {
            if (first_chunk) {
                first_chunk = false;
                if (first != 0) return first;
            }
            return std::size_t{5};
        });
        CHECK(same(got, sent));
    }
}

TEST_CASE("a packet that wraps the ring costs one copy of its wrapped part", "[receive_ring]")
{
    const packet_format f;
    receive_ring ring(16);
    std::array<portico::mutable_buffer, 2> regions;
    auto feed = [&](const std::vector<std::byte>& bytes) {
        const std::size_t put = portico::test::copy_into(ring.prepare(regions), bytes);
        ring.commit(put);
        return put;
    };
    // A 10-byte packet and the first 2 bytes of a 12-byte one arrive; the
    // first is consumed, so the front is at offset 10 with 2 bytes unread
    // (an empty ring would restart at 0). The other 10 bytes of the second
    // then land in two regions: 4 at the end, 6 at the start.
    std::vector<std::byte> p1{std::byte{10}, std::byte{0}, std::byte{1}, std::byte{0}};
    p1.resize(10, std::byte{0xAA});
    std::vector<std::byte> p2{std::byte{12}, std::byte{0}, std::byte{2}, std::byte{0}};
    for (int i = 0; i < 8; ++i) p2.push_back(static_cast<std::byte>(i));
    std::vector<std::byte> burst = p1;
    burst.insert(burst.end(), p2.begin(), p2.begin() + 2);
    REQUIRE(feed(burst) == 12);
    auto [e1, first] = portico::detail::next_packet(f, ring);
    REQUIRE(first);
    CHECK(first->type == 1);
    ring.consume(portico::detail::packet_size(f, *first));
    auto [e_partial, none] = portico::detail::next_packet(f, ring);
    CHECK_FALSE(none); // half a header: wait

    std::array<portico::mutable_buffer, 2> check;
    CHECK(ring.prepare(check).size() == 2); // the free space is split: a scatter read
    REQUIRE(feed(std::vector<std::byte>(p2.begin() + 2, p2.end())) == 10);
    CHECK(ring.wrap_copies() == 0);
    auto [e2, second] = portico::detail::next_packet(f, ring);
    REQUIRE(second);
    CHECK(second->type == 2);
    CHECK(std::vector<std::byte>(second->body.begin(), second->body.end()) ==
          std::vector<std::byte>(p2.begin() + 4, p2.end()));
    CHECK(ring.wrap_copies() == 1);
}

TEST_CASE("a hostile size is refused as soon as the header is complete, before any growth", "[receive_ring]")
{
    packet_format f;
    f.size_bytes = 4;
    for (std::uint32_t size : {std::uint32_t{64 * 1024 + 1}, std::uint32_t{0x7FFFFFFF}, std::uint32_t{0xFFFFFFFF},
                               std::uint32_t{0}, std::uint32_t{5}}) {
        INFO("size " << size);
        std::byte header[6];
        portico::detail::store_uint(header, 4, f.order, size);
        portico::detail::store_uint(header + 4, 2, f.order, 1);
        receive_ring ring(32);
        std::array<portico::mutable_buffer, 2> regions;
        for (std::size_t i = 0; i < sizeof header; ++i) {
            auto r = ring.prepare(regions);
            std::memcpy(r[0].data(), header + i, 1);
            ring.commit(1);
            auto [ec, p] = portico::detail::next_packet(f, ring);
            if (i + 1 < sizeof header) {
                CHECK_FALSE(ec); // not decided before the header is whole
                CHECK_FALSE(p);
            } else {
                CHECK((ec == errc::packet_too_large || ec == errc::packet_malformed));
            }
        }
        CHECK(ring.capacity() == 32); // nothing was allocated for it
    }
}

TEST_CASE("a ring grown for a large packet holds only its initial storage again once the packet is consumed",
          "[receive_ring]")
{
    const packet_format f;
    std::vector<std::byte> stream;
    std::vector<sent_packet> sent;
    for (std::size_t size : {std::size_t{10}, std::size_t{3000}}) {
        sent_packet p{static_cast<std::uint32_t>(size), std::vector<std::byte>(size)};
        for (std::size_t b = 0; b < size; ++b) p.body[b] = static_cast<std::byte>(b * 7 + size);
        std::byte header[8];
        auto [ec, n] = portico::encode_header(f, p.type, size, header);
        REQUIRE_FALSE(ec);
        stream.insert(stream.end(), header, header + n);
        stream.insert(stream.end(), p.body.begin(), p.body.end());
        sent.push_back(std::move(p));
    }
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    const std::size_t live_before = portico::test::live_heap_bytes();
#endif
    receive_ring ring(256);
    CHECK(ring.storage_bytes() == 0); // allocated by the first prepare()
    std::size_t fed = 0;
    const auto feed = [&] {
        std::array<portico::mutable_buffer, 2> regions;
        const std::size_t put = portico::test::copy_into(ring.prepare(regions), std::span(stream).subspan(fed));
        ring.commit(put);
        fed += put;
    };
    // The small packet and the start of the large one.
    feed();
    CHECK(ring.storage_bytes() == 2 * 256);
    auto [small_ec, small] = portico::detail::next_packet(f, ring);
    REQUIRE(small);
    CHECK(std::vector<std::byte>(small->body.begin(), small->body.end()) == sent[0].body);
    ring.consume(portico::detail::packet_size(f, *small));
    // The large packet's header grows the ring, beside its initial storage,
    // keeping the bytes already received.
    auto [partial_ec, partial] = portico::detail::next_packet(f, ring);
    CHECK_FALSE(partial);
    CHECK(ring.capacity() == 3004);
    CHECK(ring.storage_bytes() == 2 * 256 + 2 * 3004);
    while (fed < stream.size()) feed();
    auto [large_ec, large] = portico::detail::next_packet(f, ring);
    REQUIRE(large);
    CHECK(std::vector<std::byte>(large->body.begin(), large->body.end()) == sent[1].body);
    // Consumed, the ring is empty: back on its initial storage, the grown
    // one freed.
    ring.consume(portico::detail::packet_size(f, *large));
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    const std::size_t live_after = portico::test::live_heap_bytes();
#endif
    CHECK(ring.size() == 0);
    CHECK(ring.capacity() == 256);
    CHECK(ring.initial_capacity() == 256);
    CHECK(ring.storage_bytes() == 2 * 256);
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    CHECK(live_after - live_before == 2 * 256);
#endif
}

TEST_CASE("a ring gives its storage back only while it holds nothing, and takes it again on the next prepare",
          "[receive_ring]")
{
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    const std::size_t live_before = portico::test::live_heap_bytes();
#endif
    receive_ring ring(64);
    CHECK(ring.release()); // nothing to give back yet
    std::array<portico::mutable_buffer, 2> regions;
    auto free = ring.prepare(regions);
    REQUIRE(free.size() == 1);
    CHECK(free[0].size() == 64);
    CHECK(ring.storage_bytes() == 2 * 64);
    const std::array<std::byte, 3> bytes{std::byte{1}, std::byte{2}, std::byte{3}};
    ring.commit(portico::test::copy_into(free, std::span<const std::byte>(bytes)));
    // Unread bytes: the storage stays.
    CHECK_FALSE(ring.release());
    CHECK(ring.storage_bytes() == 2 * 64);
    ring.consume(1);
    CHECK_FALSE(ring.release());
    ring.consume(2);
    // Empty: given back, and the next prepare() offers the whole ring again.
    CHECK(ring.release());
    CHECK(ring.storage_bytes() == 0);
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
    CHECK(portico::test::live_heap_bytes() == live_before);
#endif
    auto again = ring.prepare(regions);
    REQUIRE(again.size() == 1);
    CHECK(again[0].size() == 64);
    CHECK(ring.storage_bytes() == 2 * 64);
}
