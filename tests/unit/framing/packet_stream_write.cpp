// The write side of packet_stream.hpp over the mock stream: gather writes,
// coalescing, watermarks and their policies, cancellation, close. What each
// write_packet awaiter checks and sends (setup errors, gathered spans,
// shared packets) is in write_packet_op.cpp.
// The same properties over real sockets are in unit/net/packet_stream_tcp.cpp.
#include <portico/framing/packet_stream.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>

#include "support/catch.hpp"
#include "support/framing.hpp"
#include "support/allocation_count.hpp"
#include "support/heap_counter.hpp"
#include "support/mock_stream.hpp"
#include "support/thread_executor.hpp"
#include "support/written_packets.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

using portico::errc;
using portico::overflow_policy;
using portico::packet_format;
using portico::packet_stream;
using portico::sync_wait;
using portico::task;
using portico::task_group;
using portico::test::allocations_now;
using portico::test::bytes_of;
using portico::test::decode_all;
using portico::test::mock_stream;
using portico::test::thread_executor;

namespace {

/// Writes one packet whose body is `body` and records the outcome.
task<> write_one(packet_stream<mock_stream>& ps, std::uint32_t type, std::vector<std::byte> body,
                 std::error_code& result)
{
    auto [ec] = co_await ps.write_packet(type, body);
    result = ec;
}

} // namespace

TEST_CASE("write_packet: header and body in one gather write, every format", "[packet_stream_write]")
{
    for (const packet_format& f : portico::test::all_packet_formats()) {
        mock_stream stream;
        packet_stream<mock_stream> ps(stream, f);
        const std::string a = "hello, ", b = "framed ", c = "world";
        const std::uint32_t type = f.type_bytes == 0 ? 0 : 0x5A;
        auto [ec] =
            sync_wait([&]() -> task<portico::io_result<void>> { co_return co_await ps.write_packet(type, a, b, c); }());
        REQUIRE_FALSE(ec);
        CHECK(stream.writes() == 1);
        const auto packets = decode_all(f, stream.written());
        REQUIRE(packets.size() == 1);
        CHECK(packets[0].type == type);
        CHECK(packets[0].body == bytes_of(a + b + c));
    }
}

TEST_CASE("write_packet: short writes of 1 and 3 bytes still deliver every packet intact", "[packet_stream_write]")
{
    for (std::size_t limit : {1u, 3u}) {
        mock_stream stream;
        stream.write_limit(limit);
        packet_stream<mock_stream> ps(stream);
        sync_wait([&]() -> task<> {
            for (std::uint32_t i = 0; i < 50; ++i) {
                std::vector<std::byte> body(i, static_cast<std::byte>(i));
                auto [ec] = co_await ps.write_packet(i, body);
                REQUIRE_FALSE(ec);
            }
        }());
        const auto packets = decode_all(packet_format{}, stream.written());
        REQUIRE(packets.size() == 50);
        for (std::uint32_t i = 0; i < 50; ++i) {
            CHECK(packets[i].type == i);
            CHECK(packets[i].body == std::vector<std::byte>(i, static_cast<std::byte>(i)));
        }
    }
}

TEST_CASE("packets queued while a write is in flight leave together in the next write", "[packet_stream_write]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(stream);
    std::vector<std::error_code> results(20);
    sync_wait([&]() -> task<> {
        task_group group;
        for (std::uint32_t i = 0; i < 20; ++i) {
            group.spawn(write_one(ps, i, std::vector<std::byte>(8, std::byte{1}), results[i]));
        }
        CHECK(stream.write_held());
        CHECK(ps.write_calls() == 1); // the first packet, held
        stream.release_writes();
        co_await group.join();
    }());
    for (const auto& ec : results) CHECK_FALSE(ec);
    // One write for the first packet, one for the 19 queued behind it.
    CHECK(ps.write_calls() == 2);
    CHECK(stream.writes() == 2);
    const auto packets = decode_all(packet_format{}, stream.written());
    REQUIRE(packets.size() == 20);
    for (std::uint32_t i = 0; i < 20; ++i) CHECK(packets[i].type == i);
}

TEST_CASE("8 writers on 8 threads, 10,000 packets each: every packet intact, per-writer order kept",
          "[packet_stream_write]")
{
    constexpr std::uint32_t writers = 8, per_writer = 10'000;
    mock_stream stream;
    stream.write_limit(100); // short writes, so packets split across writes too
    packet_stream<mock_stream> ps(stream);
    {
        thread_executor ex(writers);
        auto writer = [](thread_executor& e, packet_stream<mock_stream>& s, std::uint32_t id) -> task<> {
            co_await e.schedule();
            for (std::uint32_t seq = 0; seq < per_writer; ++seq) {
                std::array<std::uint32_t, 2> body{id, seq};
                auto [ec] = co_await s.write_packet(id, body);
                if (ec) throw std::system_error(ec);
            }
        };
        sync_wait(portico::when_all(writer(ex, ps, 0), writer(ex, ps, 1), writer(ex, ps, 2), writer(ex, ps, 3),
                                    writer(ex, ps, 4), writer(ex, ps, 5), writer(ex, ps, 6), writer(ex, ps, 7)));
    }
    const auto packets = decode_all(packet_format{}, stream.written());
    REQUIRE(packets.size() == writers * per_writer);
    const auto order = portico::test::check_writer_order(packets, writers);
    CHECK(order.out_of_order == 0);
    for (auto n : order.next) CHECK(n == per_writer);
}

TEST_CASE("suspend policy: a peer that does not read keeps the queue under the high watermark", "[packet_stream_write]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(stream, {.send = {.high_watermark = 1000, .low_watermark = 400}});
    std::vector<std::error_code> results(100, make_error_code(errc::bad_state));
    sync_wait([&]() -> task<> {
        task_group group;
        for (std::uint32_t i = 0; i < 100; ++i) {
            group.spawn(write_one(ps, i, std::vector<std::byte>(96, std::byte{7}), results[i]));
        }
        // 100-byte packets: 10 fit under 1,000 bytes, the other 90 writers wait.
        CHECK(ps.queued_bytes() == 1000);
        CHECK(ps.peak_queued_bytes() == 1000);
        std::size_t finished = 0;
        for (const auto& ec : results) finished += ec != errc::bad_state;
        CHECK(finished == 0);
        stream.release_writes();
        co_await group.join();
    }());
    CHECK(ps.peak_queued_bytes() <= 1000);
    CHECK(ps.queued_bytes() == 0);
    for (const auto& ec : results) CHECK_FALSE(ec);
    const auto packets = decode_all(packet_format{}, stream.written());
    REQUIRE(packets.size() == 100);
    for (std::uint32_t i = 0; i < 100; ++i) CHECK(packets[i].type == i); // admitted in arrival order
}

TEST_CASE("fail policy: a packet over the high watermark fails at once; the stream carries on", "[packet_stream_write]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(
        stream, {.send = {.high_watermark = 1000, .low_watermark = 400, .policy = overflow_policy::fail}});
    std::vector<std::error_code> results(15, make_error_code(errc::bad_state));
    sync_wait([&]() -> task<> {
        task_group group;
        for (std::uint32_t i = 0; i < 15; ++i) {
            group.spawn(write_one(ps, i, std::vector<std::byte>(96, std::byte{7}), results[i]));
        }
        for (std::uint32_t i = 10; i < 15; ++i) CHECK(results[i] == errc::send_queue_full);
        CHECK(ps.queued_bytes() == 1000);
        CHECK_FALSE(ps.is_closed());
        stream.release_writes();
        co_await group.join();
        auto [ec] = co_await ps.write_packet(99, std::string("after"));
        CHECK_FALSE(ec);
    }());
    for (std::uint32_t i = 0; i < 10; ++i) CHECK_FALSE(results[i]);
    const auto packets = decode_all(packet_format{}, stream.written());
    REQUIRE(packets.size() == 11);
    CHECK(packets.back().type == 99);
}

TEST_CASE("disconnect policy: the overflow closes the stream with send_queue_full, for everyone",
          "[packet_stream_write]")
{
    mock_stream stream;
    stream.push(std::vector<std::byte>(2, std::byte{0})); // half a header: the read would wait for more
    stream.hold_writes();
    packet_stream<mock_stream> ps(
        stream, {.send = {.high_watermark = 1000, .low_watermark = 400, .policy = overflow_policy::disconnect}});
    std::vector<std::error_code> results(11, make_error_code(errc::bad_state));
    sync_wait([&]() -> task<> {
        task_group group;
        for (std::uint32_t i = 0; i < 11; ++i) {
            group.spawn(write_one(ps, i, std::vector<std::byte>(96, std::byte{7}), results[i]));
        }
        co_await group.join(); // the held write was cancelled by the close
        auto [ec, p] = co_await ps.read_packet();
        CHECK(ec == errc::send_queue_full);
        auto [later] = co_await ps.write_packet(1, std::string("x"));
        CHECK(later == errc::send_queue_full);
    }());
    for (const auto& ec : results) CHECK(ec == errc::send_queue_full);
    CHECK(ps.is_closed());
    CHECK(ps.close_reason() == errc::send_queue_full);
    CHECK(stream.written().empty());
}

TEST_CASE("a write error fails the packets queued behind it and every later write", "[packet_stream_write]")
{
    mock_stream stream;
    stream.hold_writes();
    stream.push_write_error(make_error_code(errc::connection_reset));
    packet_stream<mock_stream> ps(stream);
    std::vector<std::error_code> results(5, make_error_code(errc::bad_state));
    sync_wait([&]() -> task<> {
        task_group group;
        for (std::uint32_t i = 0; i < 5; ++i) {
            group.spawn(write_one(ps, i, std::vector<std::byte>(3, std::byte{1}), results[i]));
        }
        stream.release_writes();
        co_await group.join();
        auto [ec] = co_await ps.write_packet(1, std::string("late"));
        CHECK(ec == errc::connection_reset);
    }());
    for (const auto& ec : results) CHECK(ec == errc::connection_reset);
    CHECK(ps.close_reason() == errc::connection_reset);
}

TEST_CASE("a writer's stop request withdraws its packet unless it is being written", "[packet_stream_write]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(stream);
    std::error_code first = make_error_code(errc::bad_state), second = first, third = first;
    portico::stop_source stop_first, stop_second;
    sync_wait([&]() -> task<> {
        task_group group;
        auto a = write_one(ps, 1, bytes_of("in flight"), first);
        a.set_stop_token(stop_first.get_token());
        auto b = write_one(ps, 2, bytes_of("queued"), second);
        b.set_stop_token(stop_second.get_token());
        group.spawn(std::move(a));
        group.spawn(std::move(b));
        group.spawn(write_one(ps, 3, bytes_of("also queued"), third));
        stop_second.request_stop();
        CHECK(second == errc::operation_aborted); // at once
        stop_first.request_stop();
        CHECK(first == errc::bad_state); // its bytes are in the held write
        stream.release_writes();
        co_await group.join();
    }());
    CHECK_FALSE(first);
    CHECK_FALSE(third);
    const auto packets = decode_all(packet_format{}, stream.written());
    REQUIRE(packets.size() == 2);
    CHECK(packets[0].type == 1);
    CHECK(packets[1].type == 3);
}

TEST_CASE("close(): queued writers fail at once, the write in flight is cancelled, later calls fail",
          "[packet_stream_write]")
{
    mock_stream stream;
    stream.hold_writes();
    packet_stream<mock_stream> ps(stream);
    std::vector<std::error_code> results(3, make_error_code(errc::bad_state));
    sync_wait([&]() -> task<> {
        task_group group;
        for (std::uint32_t i = 0; i < 3; ++i) group.spawn(write_one(ps, i, bytes_of("abc"), results[i]));
        ps.close();
        co_await group.join();
        auto [ec] = co_await ps.write_packet(1, std::string("late"));
        CHECK(ec == errc::operation_aborted);
        auto [read_ec, p] = co_await ps.read_packet();
        CHECK(read_ec == errc::operation_aborted);
    }());
    for (const auto& ec : results) CHECK(ec == errc::operation_aborted);
    CHECK_FALSE(stream.write_held());
}

TEST_CASE("destroying the packet_stream with writers waiting resumes them with operation_aborted",
          "[packet_stream_write]")
{
    const auto frames = portico::debug::live_frames();
    mock_stream stream;
    stream.hold_writes();
    std::vector<std::error_code> results(4, make_error_code(errc::bad_state));
    sync_wait([&]() -> task<> {
        task_group group;
        {
            packet_stream<mock_stream> ps(stream);
            for (std::uint32_t i = 0; i < 4; ++i) group.spawn(write_one(ps, i, bytes_of("abc"), results[i]));
        }
        co_await group.join();
    }());
    for (const auto& ec : results) CHECK(ec == errc::operation_aborted);
    CHECK(portico::debug::live_frames() == frames); // the driver's frame went with the state
}

TEST_CASE("steady state over the mock stream: no heap allocation per packet in or out, one read per 16 packets",
          "[packet_stream_write]")
{
    constexpr int depth = 16, warm_up = 20, rounds = 200;
    mock_stream stream;
    std::vector<std::byte> burst;
    for (std::uint32_t i = 0; i < depth; ++i) {
        std::vector<std::byte> p(4 + 32, static_cast<std::byte>(i));
        REQUIRE_FALSE(portico::encode_header(packet_format{}, i, 32, p).error());
        burst.insert(burst.end(), p.begin(), p.end());
    }
    for (int r = 0; r < warm_up + rounds; ++r) stream.push(burst);
    stream.reserve_written(burst.size() * (warm_up + rounds));
    packet_stream<mock_stream> ps(stream);
    std::optional<std::uint64_t> before, after;
    std::size_t reads = 0;
    int failures = 0;
    sync_wait([&]() -> task<> {
        std::size_t reads_before = 0;
        for (int r = 0; r < warm_up + rounds; ++r) {
            if (r == warm_up) {
                before = allocations_now();
                reads_before = stream.reads();
            }
            for (std::uint32_t i = 0; i < depth; ++i) {
                auto [ec, p] = co_await ps.read_packet();
                if (ec || p.type != i) ++failures;
                auto [write_ec] = co_await ps.write_packet(p.type, p.body);
                if (write_ec) ++failures;
            }
        }
        after = allocations_now();
        reads = stream.reads() - reads_before;
    }());
    CHECK(failures == 0);
    CHECK(static_cast<double>(reads) / (rounds * depth) < 0.2);
    CHECK(stream.written() == [&] {
        std::vector<std::byte> all;
        for (int r = 0; r < warm_up + rounds; ++r) all.insert(all.end(), burst.begin(), burst.end());
        return all;
    }());
    if (before && after) {
        CHECK(*after - *before <= portico::test::cache_growth_allowance); // over 3,200 packets in and out
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}
