// libFuzzer target over packet_stream::read_packet() driven through the mock
// stream, with fuzz-chosen chunking and an injected error.
//
// Input: byte 0 picks the packet_format and bytes 1-2 the maximum packet size
// (as in decoder_fuzz.cpp), byte 3 seeds the chunk sizes, byte 4 picks where
// an error is injected (0: none; otherwise at that fraction of the stream,
// connection_reset if odd, operation_aborted if even), byte 5 the initial
// receive buffer; the rest is the received stream. Checks that read_packet
// delivers exactly the packets a one-piece decode finds before the cut, then
// exactly the right error: the header error if its header arrived, the
// injected one if it came first, eof at a packet boundary, packet_truncated
// inside a packet.
#include <portico/coro/sync_wait.hpp>
#include <portico/framing/detail/receive_ring.hpp>
#include <portico/framing/packet_stream.hpp>

#include "support/framing.hpp"
#include "support/mock_stream.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <system_error>
#include <vector>

namespace {

void check(bool condition)
{
    if (!condition) std::abort();
}

struct reference_packet {
    std::uint32_t type;
    std::vector<std::byte> body;
    std::size_t end; // offset just past the packet in the stream
};

struct reference {
    std::vector<reference_packet> packets;
    std::error_code header_error;     // the first bad header, if any
    std::size_t error_header_end = 0; // offset just past that header
    std::size_t consumed = 0;
};

reference decode_whole(const portico::packet_format& f, std::span<const std::byte> stream)
{
    reference out;
    portico::detail::receive_ring ring(stream.size() + 1);
    std::array<portico::mutable_buffer, 2> regions;
    ring.commit(portico::test::copy_into(ring.prepare(regions), stream));
    for (;;) {
        auto [ec, p] = portico::detail::next_packet(f, ring);
        if (ec) {
            out.header_error = ec;
            out.error_header_end = out.consumed + f.header_size();
            return out;
        }
        if (!p) return out;
        const std::size_t n = portico::detail::packet_size(f, *p);
        out.consumed += n;
        out.packets.push_back({p->type, {p->body.begin(), p->body.end()}, out.consumed});
        ring.consume(n);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 6) return 0;
    portico::packet_format f;
    f.size_bytes = (data[0] & 1) != 0 ? 4 : 2;
    static constexpr unsigned type_widths[] = {0, 1, 2, 4};
    f.type_bytes = type_widths[(data[0] >> 1) & 3];
    f.order = (data[0] & 8) != 0 ? portico::byte_order::big : portico::byte_order::little;
    f.size_includes_header = (data[0] & 16) != 0;
    f.max_packet_size = f.header_size() + (std::size_t{data[1]} | (std::size_t{data[2]} << 8));
    std::uint32_t seed = data[3] * 2654435761u + 1;
    const std::uint8_t inject = data[4];
    const std::size_t initial_buffer = std::size_t{1} << (data[5] % 14);
    const std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 6), size - 6);

    const reference ref = decode_whole(f, stream);
    const std::size_t cut = inject == 0 ? stream.size() : stream.size() * inject / 256;
    const std::error_code injected =
        make_error_code((inject & 1) != 0 ? portico::errc::connection_reset : portico::errc::operation_aborted);

    portico::test::mock_stream mock;
    for (std::size_t fed = 0; fed < cut;) {
        seed = seed * 1103515245u + 12345u;
        const std::size_t chunk = std::min<std::size_t>(1 + (seed >> 16) % 97, cut - fed);
        mock.push(stream.subspan(fed, chunk));
        fed += chunk;
    }
    if (inject != 0) mock.push_error(injected);

    portico::packet_stream<portico::test::mock_stream> ps(mock, {.format = f, .receive_buffer = initial_buffer});
    std::size_t delivered = 0;
    std::error_code end;
    for (;;) {
        auto [ec, p] = portico::sync_wait(ps.read_packet());
        if (ec) {
            end = ec;
            break;
        }
        check(delivered < ref.packets.size());
        const auto& expected = ref.packets[delivered];
        check(expected.end <= cut);
        check(p.type == expected.type);
        check(p.body.size() == expected.body.size());
        check(std::equal(p.body.begin(), p.body.end(), expected.body.begin()));
        check(p.body.size() + f.header_size() <= f.max_packet_size);
        ++delivered;
    }

    // Every packet wholly before the cut (and before a bad header) came out.
    std::size_t whole = 0;
    while (whole < ref.packets.size() && ref.packets[whole].end <= cut) ++whole;
    check(delivered == whole);
    if (ref.header_error && ref.error_header_end <= cut) {
        check(end == ref.header_error);
    } else if (inject != 0) {
        check(end == injected);
    } else if (delivered == ref.packets.size() && ref.consumed == stream.size()) {
        check(end == portico::errc::eof);
    } else {
        check(end == portico::errc::packet_truncated);
    }
    return 0;
}
