// queue_packet(shared_packet): the non-waiting broadcast path. The queue's
// chunks of shared references (send_queue), then over the mock stream: order
// with copies and writers, the references released once written, errors
// that keep the caller's reference, no allocation per delivered packet, and
// the memory a recipient that stopped reading can pin (issue 19: the
// watermark must bound it, however small the packets).
#include <portico/framing/detail/send_queue.hpp>
#include <portico/framing/packet_stream.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task_group.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"
#include "support/allocation_count.hpp"
#include "support/mock_stream.hpp"
#include "support/written_packets.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using portico::const_buffer;
using portico::errc;
using portico::overflow_policy;
using portico::packet_format;
using portico::packet_stream;
using portico::shared_packet;
using portico::sync_wait;
using portico::task;
using portico::task_group;
using portico::detail::resume_list;
using portico::detail::send_queue;
using portico::detail::shared_chunk;
using portico::test::allocations_now;
using portico::test::live_bytes_now;
using portico::test::mock_stream;

namespace {

shared_packet make(std::uint32_t type, std::string_view body, const packet_format& format = {})
{
    auto [ec, p] = shared_packet::make(format, type, body);
    REQUIRE_FALSE(ec);
    return p;
}

std::string flatten(std::span<const const_buffer> buffers)
{
    std::string out;
    for (const auto& b : buffers) out.append(static_cast<const char*>(b.data()), b.size());
    return out;
}

std::string as_string(std::span<const std::byte> bytes)
{
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::vector<portico::test::decoded_packet> decode_all(const std::vector<std::byte>& bytes)
{
    return portico::test::decode_all(packet_format{}, bytes);
}

std::string body_of(const portico::test::decoded_packet& p)
{
    return {reinterpret_cast<const char*>(p.body.data()), p.body.size()};
}

} // namespace

TEST_CASE("append_shared: references fill a chunk, spill into the next, and are released once written",
          "[send_queue][shared]")
{
    send_queue q;
    const shared_packet p = make(1, "abc"); // 7 bytes
    const std::size_t n = shared_chunk::capacity + 3;
    for (std::size_t i = 0; i < n; ++i) {
        shared_packet ref = p;
        REQUIRE(q.append_shared(ref) == send_queue::admission::queued);
        CHECK_FALSE(ref); // the queue took the reference
    }
    CHECK(p.use_count() == 1 + n);
    CHECK(q.queued_bytes() == 7 * n);
    CHECK(q.charged_bytes() == 7 * n + n * send_queue::shared_entry_charge);

    std::array<const_buffer, 64> out;
    const std::size_t count = q.gather(out);
    REQUIRE(count == n); // one buffer per packet, no copy
    CHECK(out[0].data() == p.bytes().data());
    std::string expected;
    for (std::size_t i = 0; i < n; ++i) expected += as_string(p.bytes());
    CHECK(flatten(std::span(out.data(), count)) == expected);

    resume_list done;
    q.consume(7 * shared_chunk::capacity - 1, done); // the first chunk is one byte short
    CHECK(p.use_count() == 1 + n);
    q.consume(1, done);
    CHECK(p.use_count() == 1 + 3);
    CHECK(q.charged_bytes() == 7 * 3 + 3 * send_queue::shared_entry_charge);
    q.consume(7 * 3, done);
    CHECK(p.use_count() == 1);
    CHECK(q.charged_bytes() == 0);
    CHECK_FALSE(q.has_unsent());
}

TEST_CASE("append_shared keeps order with copies and writers' nodes, and is refused over the watermark",
          "[send_queue][shared]")
{
    send_queue q({.high_watermark = 200, .low_watermark = 50});
    shared_packet a = make(1, "shared-a");
    const std::array<std::byte, 2> header{std::byte{'h'}, std::byte{'h'}};
    const std::string copy = "copy";
    const std::array<const_buffer, 1> parts{portico::buffer(copy)};
    REQUIRE(q.append_copy(header, parts, 6) == send_queue::admission::queued);
    shared_packet ref = a;
    REQUIRE(q.append_shared(ref) == send_queue::admission::queued);
    REQUIRE(q.append_copy(header, parts, 6) == send_queue::admission::queued);
    std::array<const_buffer, 64> out;
    CHECK(flatten(std::span(out.data(), q.gather(out))) == "hhcopy" + as_string(a.bytes()) + "hhcopy");

    // Charged: 12 bytes of copies, 12 of packet and one entry's charge.
    CHECK(q.charged_bytes() == 24 + send_queue::shared_entry_charge);
    // A packet whose charge passes the watermark is refused and keeps its
    // reference, although its bytes alone would fit.
    const std::size_t room = 200 - q.charged_bytes();
    REQUIRE(room > send_queue::shared_entry_charge);
    shared_packet big = make(2, std::string(room - send_queue::shared_entry_charge, 'x'));
    REQUIRE(big.bytes().size() <= room);
    shared_packet big_ref = big;
    CHECK(q.append_shared(big_ref) == send_queue::admission::refused);
    CHECK(big_ref);
    CHECK(big.use_count() == 2);

    resume_list failed;
    q.fail_all(make_error_code(errc::operation_aborted), failed);
    CHECK(a.use_count() == 1);
    CHECK(q.charged_bytes() == 0);
}

TEST_CASE("fail_unsent drops chunks not yet written and keeps the one being written", "[send_queue][shared]")
{
    send_queue q;
    shared_packet p = make(3, "x");
    for (std::size_t i = 0; i < shared_chunk::capacity + 1; ++i) {
        shared_packet ref = p;
        REQUIRE(q.append_shared(ref) == send_queue::admission::queued);
    }
    std::array<const_buffer, 64> out;
    REQUIRE(q.gather(std::span(out.data(), 2)) == 2); // only the first chunk is in the write
    resume_list failed;
    q.fail_unsent(make_error_code(errc::operation_aborted), failed);
    CHECK(p.use_count() == 1 + shared_chunk::capacity);
    q.consume(5 * 2, failed); // the write in flight ends after its two packets
    q.fail_all(make_error_code(errc::operation_aborted), failed);
    CHECK(p.use_count() == 1);
}

TEST_CASE("queue_packet(shared) goes out with the copies and writes around it, once, in order",
          "[packet_stream_queue][shared]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(stream);
    const shared_packet hello = make(7, "hello, room");
    REQUIRE_FALSE(ps.queue_packet(1, std::string_view("first")));
    REQUIRE_FALSE(ps.queue_packet(hello));
    REQUIRE_FALSE(ps.queue_packet(2, std::string_view("third")));
    REQUIRE_FALSE(ps.queue_packet(hello));
    CHECK(hello.use_count() == 3);
    CHECK(stream.writes() == 0);
    CHECK(stream.context().deferred() == 1); // one flush for the burst
    stream.context().run_deferred();
    CHECK(stream.writes() == 1);
    CHECK(hello.use_count() == 1); // released once written

    std::optional<std::error_code> written_ec;
    sync_wait([&]() -> task<> {
        REQUIRE_FALSE(ps.queue_packet(hello));
        task_group group;
        group.spawn([](packet_stream<mock_stream>& s, std::optional<std::error_code>& out) -> task<> {
            auto [ec] = co_await s.write_packet(3, std::string_view("after"));
            out = ec;
        }(ps, written_ec));
        // The writer waits behind the shared packet's deferred flush.
        CHECK_FALSE(written_ec.has_value());
        stream.context().run_deferred();
        co_await group.join();
    }());
    REQUIRE(written_ec.has_value());
    CHECK_FALSE(*written_ec);

    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == 6);
    CHECK(packets[0].type == 1);
    CHECK(packets[1].type == 7);
    CHECK(body_of(packets[1]) == "hello, room");
    CHECK(packets[2].type == 2);
    CHECK(packets[3].type == 7);
    CHECK(packets[4].type == 7);
    CHECK(packets[5].type == 3);
    CHECK(hello.use_count() == 1);
    CHECK(ps.queued_bytes() == 0);
}

TEST_CASE("queue_packet(shared) refusals queue nothing and leave the caller's packet as it was",
          "[packet_stream_queue][shared]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(
        stream, {.format = {.max_packet_size = 64},
                 .send = {.high_watermark = 256, .low_watermark = 64, .policy = overflow_policy::fail}});
    SECTION("empty")
    {
        CHECK(ps.queue_packet(shared_packet{}) == errc::invalid_argument);
        CHECK(ps.queued_bytes() == 0);
    }
    SECTION("another header layout")
    {
        const shared_packet other = make(1, "x", packet_format{.type_bytes = 1});
        CHECK(ps.queue_packet(other) == errc::invalid_argument);
        CHECK(other.use_count() == 1);
        CHECK(ps.queued_bytes() == 0);
    }
    SECTION("larger than this stream's maximum")
    {
        const shared_packet big = make(1, std::string(100, 'x'));
        CHECK(ps.queue_packet(big) == errc::packet_too_large);
        CHECK(big.use_count() == 1);
        CHECK(ps.queued_bytes() == 0);
    }
    SECTION("over the high watermark, then room again once written")
    {
        const shared_packet p = make(1, std::string(40, 'x')); // 44 bytes + the entry's charge
        std::size_t queued = 0;
        while (!ps.queue_packet(p)) ++queued;
        CHECK(queued == 256 / (44 + send_queue::shared_entry_charge));
        CHECK(p.use_count() == 1 + queued);
        CHECK(ps.queued_bytes() <= 256);
        CHECK(ps.queue_packet(p) == errc::send_queue_full);
        CHECK_FALSE(ps.is_closed());
        stream.context().run_deferred();
        CHECK(p.use_count() == 1);
        CHECK_FALSE(ps.queue_packet(p));
        stream.context().run_deferred();
        CHECK(decode_all(stream.written()).size() == queued + 1);
    }
    SECTION("after close, and on a moved-from stream")
    {
        const shared_packet p = make(1, "late");
        ps.close(make_error_code(errc::rate_limited));
        CHECK(ps.queue_packet(p) == errc::rate_limited);
        packet_stream<mock_stream> taker(std::move(ps));
        CHECK(ps.queue_packet(p) == errc::bad_state); // NOLINT(bugprone-use-after-move): the documented state
        CHECK(p.use_count() == 1);
        CHECK(taker.queued_bytes() == 0);
        stream.context().run_deferred();
        CHECK(stream.writes() == 0);
    }
}

TEST_CASE("queue_packet(shared) with the disconnect policy cuts the stream off and drops what it held",
          "[packet_stream_queue][shared]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(
        stream, {.send = {.high_watermark = 1024, .low_watermark = 256, .policy = overflow_policy::disconnect}});
    const shared_packet p = make(9, std::string(100, 'y'));
    REQUIRE_FALSE(ps.queue_packet(p));
    stream.context().run_deferred(); // the first write starts and is held
    REQUIRE(stream.write_held());
    std::error_code refused;
    for (int i = 0; i < 100 && !refused; ++i) refused = ps.queue_packet(p);
    CHECK(refused == errc::send_queue_full);
    CHECK(ps.is_closed());
    CHECK(ps.close_reason() == errc::send_queue_full);
    // The close cancelled the held write too: nothing holds the packet.
    CHECK_FALSE(stream.write_held());
    CHECK(p.use_count() == 1);
    CHECK(ps.queued_bytes() == 0);
}

TEST_CASE("a broadcast to 100 streams: one allocation per packet made, none per delivery",
          "[packet_stream_queue][shared]")
{
    constexpr int members = 100, warm_up = 10, rounds = 100;
    std::vector<mock_stream> streams(members);
    std::vector<std::unique_ptr<packet_stream<mock_stream>>> room;
    for (auto& s : streams) {
        s.reserve_written(std::size_t{warm_up + rounds} * 3 * 40);
        room.push_back(std::make_unique<packet_stream<mock_stream>>(s));
    }
    std::optional<std::uint64_t> before;
    for (int r = 0; r < warm_up + rounds; ++r) {
        if (r == warm_up) before = allocations_now();
        // A tick's worth of lines, each made once and queued to everyone.
        for (int line = 0; line < 3; ++line) {
            const shared_packet p = make(static_cast<std::uint32_t>(line), "a line of chat, 36 bytes long......");
            for (auto& member : room) REQUIRE_FALSE(member->queue_packet(p));
        }
        for (auto& s : streams) s.context().run_deferred();
    }
    const std::optional<std::uint64_t> after = allocations_now();
    for (auto& s : streams) {
        const auto packets = decode_all(s.written());
        REQUIRE(packets.size() == std::size_t{warm_up + rounds} * 3);
        CHECK(body_of(packets.back()) == "a line of chat, 36 bytes long......");
    }
    if (before && after) {
        CHECK(*after - *before == std::uint64_t{rounds} * 3); // the make() calls
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}

TEST_CASE("a member that stopped reading pins at most its watermark plus a constant, and is cut off by the policy",
          "[packet_stream_queue][shared][memory]")
{
    if (!live_bytes_now()) {
        WARN("live heap bytes are not counted in this build (ASan or TSan)");
        return;
    }
    constexpr std::size_t watermark = 64 * 1024;
    // One chunk in the held write beyond the charge, the chunks kept for
    // reuse, and the stream's own state: what a member may pin above its
    // watermark.
    constexpr std::size_t slack = 8 * 1024;
    const portico::packet_stream_options options{
        .send = {.high_watermark = watermark, .low_watermark = watermark / 4, .policy = overflow_policy::disconnect}};

    SECTION("one stalled member among readers: it alone holds the lines it has not taken")
    {
        constexpr int readers = 9;
        std::vector<mock_stream> streams(readers + 1);
        std::vector<std::unique_ptr<packet_stream<mock_stream>>> room;
        for (auto& s : streams) {
            s.reserve_written(1 << 20);
            room.push_back(std::make_unique<packet_stream<mock_stream>>(s, options));
        }
        // Every stream has its chunk for reuse before the count starts.
        const shared_packet first = make(1, "warm-up");
        for (auto& member : room) REQUIRE_FALSE(member->queue_packet(first));
        for (auto& s : streams) s.context().run_deferred();
        streams.back().hold_writes();
        const std::size_t baseline = *live_bytes_now();
        std::size_t peak = 0, lines = 0;
        while (!room.back()->is_closed()) {
            // One-byte lines: the smallest packets cost the most per byte.
            const shared_packet p = make(1, "!");
            for (auto& member : room) {
                if (!member->is_closed()) (void)member->queue_packet(p);
            }
            ++lines;
            for (auto& s : streams) s.context().run_deferred();
            const std::size_t live = *live_bytes_now() - baseline;
            if (live > peak) peak = live;
            REQUIRE(lines < watermark); // the policy cuts it off long before
        }
        CHECK(room.back()->close_reason() == errc::send_queue_full);
        for (int i = 0; i < readers; ++i) CHECK_FALSE(room[i]->is_closed());
        CHECK(peak <= watermark + slack);
        // After the cut, only the chunk in the held write is left.
        CHECK(*live_bytes_now() - baseline <= slack);
    }
    SECTION("fifty stalled members: each is cut off at its watermark")
    {
        constexpr int members = 50;
        std::vector<mock_stream> streams(members);
        std::vector<std::unique_ptr<packet_stream<mock_stream>>> room;
        for (auto& s : streams) {
            s.hold_writes();
            room.push_back(std::make_unique<packet_stream<mock_stream>>(s, options));
        }
        const std::size_t baseline = *live_bytes_now();
        std::size_t peak = 0, open = members;
        for (std::size_t lines = 0; open != 0; ++lines) {
            const shared_packet p = make(1, "!");
            open = 0;
            for (auto& member : room) {
                if (member->is_closed()) continue;
                (void)member->queue_packet(p);
                open += member->is_closed() ? 0 : 1;
            }
            if (lines % 64 == 0) {
                for (auto& s : streams) s.context().run_deferred();
            }
            const std::size_t live = *live_bytes_now() - baseline;
            if (live > peak) peak = live;
            REQUIRE(lines < watermark);
        }
        for (auto& member : room) CHECK(member->close_reason() == errc::send_queue_full);
        CHECK(peak <= members * (watermark + slack));
        for (auto& s : streams) s.context().run_deferred(); // frees what the last flushes held
    }
}
