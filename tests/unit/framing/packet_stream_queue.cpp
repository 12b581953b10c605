// packet_stream::queue_packet over the mock stream: copies, one write per
// burst once the deferred flush runs, order with write_packet, watermarks,
// close, blocks spanning and growing in flight, no allocation per packet,
// many threads. The mock's context holds deferred resumptions until the test
// runs them, as a pool thread holds them until its handler returns; the same
// over real sockets and io_context::defer is in unit/net/packet_stream_tcp.cpp.
#include <portico/framing/packet_stream.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task_group.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"
#include "support/allocation_count.hpp"
#include "support/mock_stream.hpp"
#include "support/written_packets.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

using portico::errc;
using portico::overflow_policy;
using portico::packet_format;
using portico::packet_stream;
using portico::sync_wait;
using portico::task;
using portico::task_group;
using portico::test::allocations_now;
using portico::test::mock_stream;

namespace {

std::vector<portico::test::decoded_packet> decode_all(const std::vector<std::byte>& bytes)
{
    return portico::test::decode_all(packet_format{}, bytes);
}

std::vector<std::byte> filled(std::size_t n, std::uint32_t seed)
{
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 7 + seed) & 0xFF);
    return v;
}

} // namespace

TEST_CASE("queue_packet copies at once and a burst leaves in one write when the deferred flush runs",
          "[packet_stream_queue]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(stream);
    std::vector<std::byte> body;
    for (std::uint32_t i = 0; i < 20; ++i) {
        body = filled(10 + i, i);
        REQUIRE_FALSE(ps.queue_packet(i, body));
        // The caller's buffer is ours again at once.
        std::fill(body.begin(), body.end(), std::byte{0xEE});
    }
    CHECK(stream.writes() == 0);
    CHECK(stream.context().deferred() == 1); // one flush for the whole burst
    CHECK(ps.queued_bytes() == 20 * 4 + (10 + 29) * 20 / 2);
    CHECK(stream.context().run_deferred() == 1);
    CHECK(stream.writes() == 1);
    CHECK(ps.write_calls() == 1);
    CHECK(ps.queued_bytes() == 0);
    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == 20);
    for (std::uint32_t i = 0; i < 20; ++i) {
        CHECK(packets[i].type == i);
        CHECK(packets[i].body == filled(10 + i, i));
    }
}

TEST_CASE("queue_packet keeps order with write_packet, which resumes after the copies before it went out",
          "[packet_stream_queue]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(stream);
    std::optional<std::error_code> last_word;
    sync_wait([&]() -> task<> {
        REQUIRE_FALSE(ps.queue_packet(1, std::string("first")));
        REQUIRE_FALSE(ps.queue_packet(2, std::string("second")));
        task_group group;
        group.spawn([](packet_stream<mock_stream>& s, std::optional<std::error_code>& out) -> task<> {
            auto [ec] = co_await s.write_packet(3, std::string("last word"));
            out = ec;
        }(ps, last_word));
        // The flush has not run: the writer waits behind the copies.
        CHECK_FALSE(last_word.has_value());
        CHECK(stream.writes() == 0);
        stream.context().run_deferred();
        co_await group.join();
    }());
    REQUIRE(last_word.has_value());
    CHECK_FALSE(*last_word);
    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == 3);
    CHECK(packets[0].type == 1);
    CHECK(packets[1].type == 2);
    CHECK(packets[2].type == 3);
    CHECK(stream.writes() == 1); // all three gathered into one write
}

TEST_CASE("a read that has to wait sends the queued copies first; the deferred flush then finds nothing",
          "[packet_stream_queue]")
{
    mock_stream stream;
    stream.hold_reads();
    packet_stream<mock_stream> ps(stream);
    std::error_code read_result;
    sync_wait([&]() -> task<> {
        REQUIRE_FALSE(ps.queue_packet(1, std::string("answer one")));
        REQUIRE_FALSE(ps.queue_packet(2, std::string("answer two")));
        CHECK(stream.writes() == 0);
        task_group group;
        group.spawn([](packet_stream<mock_stream>& s, std::error_code& out) -> task<> {
            auto [ec, p] = co_await s.read_packet();
            out = ec;
        }(ps, read_result));
        CHECK(stream.read_held());
        CHECK(stream.writes() == 1); // before the read started waiting
        CHECK(stream.context().run_deferred() == 1);
        CHECK(stream.writes() == 1); // nothing left for the deferred flush
        REQUIRE_FALSE(ps.queue_packet(3, std::string("later")));
        CHECK(stream.context().run_deferred() == 1);
        CHECK(stream.writes() == 2);
        ps.close();
        co_await group.join();
    }());
    CHECK(read_result == errc::operation_aborted);
    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == 3);
    CHECK(packets[2].type == 3);
}

TEST_CASE("queue_packet over the high watermark: send_queue_full, the stream stays open unless the policy disconnects",
          "[packet_stream_queue]")
{
    for (overflow_policy policy : {overflow_policy::suspend, overflow_policy::fail, overflow_policy::disconnect}) {
        mock_stream stream;
        packet_stream<mock_stream> ps(stream,
                                      {.send = {.high_watermark = 1000, .low_watermark = 400, .policy = policy}});
        const auto body = filled(96, 1);
        for (int i = 0; i < 10; ++i) REQUIRE_FALSE(ps.queue_packet(7, body)); // 10 x 100 bytes fit
        CHECK(ps.queued_bytes() == 1000);
        CHECK(ps.queue_packet(7, body) == errc::send_queue_full);
        CHECK(ps.queued_bytes() <= 1000);
        if (policy == overflow_policy::disconnect) {
            CHECK(ps.is_closed());
            CHECK(ps.close_reason() == errc::send_queue_full);
            stream.context().run_deferred();
            CHECK(stream.written().empty()); // the copies were dropped with the stream
        } else {
            CHECK_FALSE(ps.is_closed());
            stream.context().run_deferred();
            CHECK(decode_all(stream.written()).size() == 10);
            CHECK_FALSE(ps.queue_packet(7, body)); // room again
            stream.context().run_deferred();
            CHECK(decode_all(stream.written()).size() == 11);
        }
    }
}

TEST_CASE("queue_packet does not overtake writers waiting for room", "[packet_stream_queue]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(stream, {.send = {.high_watermark = 1000, .low_watermark = 400}});
    std::vector<std::error_code> results(20, make_error_code(errc::bad_state));
    sync_wait([&]() -> task<> {
        task_group group;
        for (std::uint32_t i = 0; i < 20; ++i) {
            group.spawn([](packet_stream<mock_stream>& s, std::uint32_t type, std::error_code& out) -> task<> {
                auto [ec] = co_await s.write_packet(type, filled(96, type));
                out = ec;
            }(ps, i, results[i]));
        }
        // 10 packets queued, 10 writers held back by the suspend policy.
        CHECK(ps.queue_packet(99, std::string("x")) == errc::send_queue_full);
        CHECK_FALSE(ps.is_closed());
        stream.release_writes();
        co_await group.join();
    }());
    for (const auto& ec : results) CHECK_FALSE(ec);
    for (const auto& p : decode_all(stream.written())) CHECK(p.type != 99);
}

TEST_CASE("queue_packet after close fails with the reason; copies not yet written are dropped", "[packet_stream_queue]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(stream);
    REQUIRE_FALSE(ps.queue_packet(1, std::string("never sent")));
    ps.close();
    stream.context().run_deferred(); // the driver finds nothing to write
    CHECK(stream.writes() == 0);
    CHECK(ps.queue_packet(2, std::string("too late")) == errc::operation_aborted);
}

TEST_CASE("queue_packet refuses a packet the format cannot carry, queueing nothing", "[packet_stream_queue]")
{
    mock_stream stream;
    packet_stream<mock_stream> ps(stream, {.format = {.type_bytes = 1, .max_packet_size = 1000}});
    CHECK(ps.queue_packet(1, filled(998, 0)) == errc::packet_too_large); // 3 + 998 > 1000
    CHECK(ps.queue_packet(256, std::string("type too wide")) == errc::invalid_argument);
    CHECK(ps.queued_bytes() == 0);
    CHECK(stream.context().deferred() == 0);
    CHECK_FALSE(ps.is_closed());
}

TEST_CASE("queue_packet: packets larger than a block, short writes, and copies added to a block being written",
          "[packet_stream_queue]")
{
    mock_stream stream;
    stream.write_limit(1000);
    stream.hold_writes();
    packet_stream<mock_stream> ps(stream);
    const std::vector<std::size_t> sizes{10'000, 65'531, 3, 4'092, 4'093, 1};
    REQUIRE_FALSE(ps.queue_packet(0, filled(sizes[0], 0)));
    stream.context().run_deferred(); // the first write starts and is held
    REQUIRE(stream.write_held());
    // These land behind it, some in the very block the held write covers.
    for (std::uint32_t i = 1; i < sizes.size(); ++i) REQUIRE_FALSE(ps.queue_packet(i, filled(sizes[i], i)));
    CHECK(stream.context().deferred() == 0); // the driver is running: no second wake
    stream.release_writes();
    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == sizes.size());
    for (std::uint32_t i = 0; i < sizes.size(); ++i) {
        CHECK(packets[i].type == i);
        CHECK(packets[i].body == filled(sizes[i], i));
    }
    CHECK(ps.queued_bytes() == 0);
}

TEST_CASE("queue_packet in steady state: no heap allocation per packet, one write per burst", "[packet_stream_queue]")
{
    constexpr int depth = 16, warm_up = 20, rounds = 200;
    mock_stream stream;
    stream.reserve_written(std::size_t{depth} * (warm_up + rounds) * 40);
    packet_stream<mock_stream> ps(stream);
    const auto body = filled(36, 3);
    std::optional<std::uint64_t> before, after;
    std::uint64_t writes_before = 0;
    for (int r = 0; r < warm_up + rounds; ++r) {
        if (r == warm_up) {
            before = allocations_now();
            writes_before = ps.write_calls();
        }
        for (std::uint32_t i = 0; i < depth; ++i) REQUIRE_FALSE(ps.queue_packet(i, body));
        stream.context().run_deferred();
    }
    after = allocations_now();
    CHECK(ps.write_calls() - writes_before == rounds);
    CHECK(decode_all(stream.written()).size() == std::size_t{depth} * (warm_up + rounds));
    if (before && after) {
        CHECK(*after - *before == 0);
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}

TEST_CASE("queue_packet from 8 threads, 5,000 packets each: every packet intact, per-thread order kept",
          "[packet_stream_queue]")
{
    constexpr std::uint32_t writers = 8, per_writer = 5'000;
    mock_stream stream;
    stream.write_limit(700); // short writes: blocks are split between writes too
    packet_stream<mock_stream> ps(stream, {.send = {.high_watermark = 1 << 30, .low_watermark = 1 << 29}});
    std::atomic<std::uint32_t> done{0};
    std::atomic<std::uint32_t> refused{0};
    {
        std::vector<std::thread> threads;
        for (std::uint32_t id = 0; id < writers; ++id) {
            threads.emplace_back([&, id] {
                for (std::uint32_t seq = 0; seq < per_writer; ++seq) {
                    const std::array<std::uint32_t, 2> body{id, seq};
                    if (ps.queue_packet(id, body)) ++refused;
                }
                ++done;
            });
        }
        // The flushes run here, racing with the writers, as a pool thread's would.
        while (done.load() != writers) stream.context().run_deferred();
        for (auto& t : threads) t.join();
        stream.context().run_deferred();
    }
    CHECK(refused == 0);
    const auto packets = decode_all(stream.written());
    REQUIRE(packets.size() == writers * per_writer);
    const auto order = portico::test::check_writer_order(packets, writers);
    CHECK(order.out_of_order == 0);
    for (auto n : order.next) CHECK(n == per_writer);
}
