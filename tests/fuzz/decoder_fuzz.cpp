// libFuzzer target over the framing decoder (receive_ring + next_packet).
//
// Input: byte 0 picks the packet_format (size width, type width, byte order,
// whether the size counts the header), bytes 1-2 the maximum packet size,
// byte 3 seeds the chunking; the rest is the received stream. Checks:
//   - split invariance: decoding the stream in one piece and in fuzz-chosen
//     pieces gives the same packets, the same error and the same leftover;
//   - the size cap: no packet and no ring larger than the maximum;
//   - round trip: re-encoding the packets gives back the bytes consumed.
#include <portico/framing/detail/receive_ring.hpp>

#include "support/framing.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <system_error>
#include <vector>

namespace {

struct decoded {
    std::vector<std::uint32_t> types;
    std::vector<std::vector<std::byte>> bodies;
    std::error_code error;
    std::size_t consumed = 0;
    std::size_t largest_ring = 0;
};

template <class NextChunk>
decoded decode(const portico::packet_format& f, std::span<const std::byte> stream, NextChunk next_chunk)
{
    decoded out;
    portico::detail::receive_ring ring(16);
    std::size_t fed = 0;
    for (;;) {
        for (;;) {
            auto [ec, p] = portico::detail::next_packet(f, ring);
            out.largest_ring = std::max(out.largest_ring, ring.capacity());
            if (ec) {
                out.error = ec;
                return out;
            }
            if (!p) break;
            out.types.push_back(p->type);
            out.bodies.emplace_back(p->body.begin(), p->body.end());
            const std::size_t n = portico::detail::packet_size(f, *p);
            ring.consume(n);
            out.consumed += n;
        }
        if (fed == stream.size()) return out;
        std::array<portico::mutable_buffer, 2> regions;
        const std::size_t want = std::min<std::size_t>(next_chunk(), stream.size() - fed);
        const std::size_t put = portico::test::copy_into(ring.prepare(regions), stream.subspan(fed, want));
        if (put == 0) std::abort(); // a ring with no free space and no packet: a bug
        ring.commit(put);
        fed += put;
    }
}

void check(bool condition)
{
    if (!condition) std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 4) return 0;
    portico::packet_format f;
    f.size_bytes = (data[0] & 1) != 0 ? 4 : 2;
    static constexpr unsigned type_widths[] = {0, 1, 2, 4};
    f.type_bytes = type_widths[(data[0] >> 1) & 3];
    f.order = (data[0] & 8) != 0 ? portico::byte_order::big : portico::byte_order::little;
    f.size_includes_header = (data[0] & 16) != 0;
    f.max_packet_size = f.header_size() + (std::size_t{data[1]} | (std::size_t{data[2]} << 8));
    unsigned state = data[3] | 1u;
    const auto stream = std::as_bytes(std::span(data + 4, size - 4));

    const decoded whole = decode(f, stream, [&] { return stream.size(); });
    const decoded pieces = decode(f, stream, [&] {
        state = state * 1103515245u + 12345u;
        return std::size_t{1} + (state >> 16) % 64;
    });

    check(whole.types == pieces.types && whole.bodies == pieces.bodies);
    check(whole.error == pieces.error && whole.consumed == pieces.consumed);
    for (const decoded* d : {&whole, &pieces}) {
        check(d->largest_ring <= std::max<std::size_t>(16, f.max_packet_size));
    }

    std::vector<std::byte> again;
    for (std::size_t i = 0; i < whole.types.size(); ++i) {
        check(f.header_size() + whole.bodies[i].size() <= f.max_packet_size);
        std::byte header[8];
        auto [ec, n] = portico::encode_header(f, whole.types[i], whole.bodies[i].size(), header);
        check(!ec);
        again.insert(again.end(), header, header + n);
        again.insert(again.end(), whole.bodies[i].begin(), whole.bodies[i].end());
    }
    check(again.size() == whole.consumed);
    check(std::equal(again.begin(), again.end(), stream.begin()));
    return 0;
}
