// packet_stream over a real tcp_socket (the mock-stream tests are in
// unit/framing/packet_stream.cpp and packet_stream_write.cpp).
#include <portico/framing/packet_stream.hpp>
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/timer.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/heap_counter.hpp"
#include "support/loopback.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

using namespace std::chrono_literals;

using portico::buffer;
using portico::errc;
using portico::overflow_policy;
using portico::packet_format;
using portico::packet_stream;
using portico::task;
using portico::tcp_socket;

PORTICO_IO_TEST_CASE("read_packet over a tcp_socket: 1,000 packets written in random pieces", "[packet_stream_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    std::mt19937 random(11);
    std::vector<std::byte> stream;
    std::vector<std::uint32_t> sizes;
    for (std::uint32_t i = 0; i < 1000; ++i) {
        const std::size_t size = i % 100 == 0 ? 30000 : random() % 200;
        std::vector<std::byte> p(4 + size, static_cast<std::byte>(i & 0xFF));
        REQUIRE_FALSE(portico::encode_header(packet_format{}, i, size, p).error());
        stream.insert(stream.end(), p.begin(), p.end());
        sizes.push_back(static_cast<std::uint32_t>(size));
    }

    auto writer = [&](tcp_socket& s) -> task<> {
        std::size_t sent = 0;
        while (sent < stream.size()) {
            const std::size_t n = std::min<std::size_t>(1 + random() % 3000, stream.size() - sent);
            auto [ec, written] = co_await s.write_all(buffer(stream.data() + sent, n));
            if (ec) co_return;
            sent += written;
        }
        (void)s.shutdown_send();
    };
    std::size_t intact = 0;
    std::error_code end;
    auto reader = [&](tcp_socket s) -> task<> {
        packet_stream<tcp_socket> ps(std::move(s));
        for (;;) {
            auto [ec, p] = co_await ps.read_packet();
            if (ec) {
                end = ec;
                co_return;
            }
            bool ok = p.type == intact && p.body.size() == sizes[intact];
            for (std::byte b : p.body) ok = ok && b == static_cast<std::byte>(p.type & 0xFF);
            intact += ok;
        }
    };
    co_await portico::when_all(writer(client), reader(std::move(server)));
    CHECK(intact == 1000);
    CHECK(end == errc::eof);
}

namespace {

/// Reads packets until the stream ends, checking that every body is
/// {writer id, sequence} with each writer's sequence in order.
task<> check_writers(packet_stream<tcp_socket>& ps, std::vector<std::uint32_t>& next, std::size_t& bad,
                     std::error_code& end)
{
    for (;;) {
        auto [ec, p] = co_await ps.read_packet();
        if (ec) {
            end = ec;
            co_return;
        }
        std::uint32_t id = 0, seq = 0;
        if (p.body.size() != 8) {
            ++bad;
            continue;
        }
        std::memcpy(&id, p.body.data(), 4);
        std::memcpy(&seq, p.body.data() + 4, 4);
        if (id >= next.size() || p.type != id || seq != next[id]) {
            ++bad;
            continue;
        }
        ++next[id];
    }
}

} // namespace

PORTICO_IO_TEST_CASE("8 writers on pool threads, 10,000 packets each: intact, in order, coalesced",
                     "[packet_stream_tcp]")
{
    constexpr std::uint32_t writers = 8, per_writer = 10'000;
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> out(std::move(server));
    packet_stream<tcp_socket> in(std::move(client));
    const auto sends_before = ctx.statistics().send_calls;

    auto writer = [](portico::io_context& c, packet_stream<tcp_socket>& ps, std::uint32_t id) -> task<> {
        co_await c.schedule(); // onto whichever pool thread takes it
        for (std::uint32_t seq = 0; seq < per_writer; ++seq) {
            std::array<std::uint32_t, 2> body{id, seq};
            auto [ec] = co_await ps.write_packet(id, body);
            if (ec) co_return;
        }
    };
    std::vector<std::uint32_t> next(writers, 0);
    std::size_t bad = 0;
    std::error_code end;
    auto all_writers = [&]() -> task<> {
        portico::task_group group;
        for (std::uint32_t id = 0; id < writers; ++id) group.spawn(writer(ctx, out, id));
        co_await group.join();
        (void)out.next_layer().shutdown_send();
    };
    co_await portico::when_all(all_writers(), check_writers(in, next, bad, end));

    const auto sends = ctx.statistics().send_calls - sends_before;
    UNSCOPED_INFO("WSASend calls for " << writers * per_writer << " packets: " << sends);
    CHECK(bad == 0);
    CHECK(end == errc::eof);
    for (auto n : next) CHECK(n == per_writer);
    CHECK(sends == out.write_calls());
    // Packets that meet a write in flight leave together with the next one
    // (measured under Wine: about 8 packets per WSASend, one per writer).
    CHECK(sends * 2 <= writers * per_writer);
}

namespace {

/// Writes up to `count` 1 KiB packets, stopping at the first error; counts
/// the successes.
task<> flood(packet_stream<tcp_socket>& ps, int count, std::atomic<std::size_t>& accepted, std::error_code& end)
{
    std::vector<std::byte> body(1020, std::byte{0x42});
    for (int i = 0; i < count; ++i) {
        auto [ec] = co_await ps.write_packet(1, body);
        if (ec) {
            end = ec;
            co_return;
        }
        accepted.fetch_add(1, std::memory_order_relaxed);
    }
}

constexpr std::size_t high = 64 * 1024;
// More writers than the watermark holds packets: each writer has one packet
// in the queue at a time, so only many writers (a broadcast) can fill it.
constexpr int writers = 100;

} // namespace

PORTICO_IO_TEST_CASE("a peer that does not read: with the suspend policy the writers wait under the high watermark",
                     "[packet_stream_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    REQUIRE_FALSE(server.set_send_buffer_size(16 * 1024).error());
    REQUIRE_FALSE(client.set_receive_buffer_size(16 * 1024).error());
    packet_stream<tcp_socket> ps(std::move(server), {.send = {.high_watermark = high, .low_watermark = high / 2}});
    packet_stream<tcp_socket> peer(std::move(client));
    constexpr int per_writer = 20; // 2 MB in all: far more than the kernel buffers
    std::atomic<std::size_t> accepted{0};
    std::vector<std::error_code> ends(writers, make_error_code(errc::bad_state));
    portico::task_group group;
    for (auto& end : ends) {
        group.spawn([](packet_stream<tcp_socket>& s, std::atomic<std::size_t>& n, std::error_code& e) -> task<> {
            e = {};
            co_await flood(s, per_writer, n, e);
        }(ps, accepted, end));
    }
    // While the peer does not read, the kernel takes what its buffers hold
    // and the rest waits in the queue, never above the watermark.
    co_await ctx.sleep_for(200ms);
    CHECK(ps.queued_bytes() + 1024 > high);
    CHECK(ps.peak_queued_bytes() <= high);
    CHECK(accepted.load() < std::size_t{writers} * per_writer / 4);
    CHECK_FALSE(ps.is_closed());
    // The peer reads: the writers wake in turn and everything arrives.
    std::size_t received = 0;
    bool intact = true;
    auto drain = [&]() -> task<> {
        while (received < std::size_t{writers} * per_writer) {
            auto [read_ec, p] = co_await peer.read_packet();
            if (read_ec) co_return;
            intact = intact && p.type == 1 && p.body.size() == 1020;
            ++received;
        }
    };
    co_await portico::when_all(drain(), group.join());
    CHECK(intact);
    CHECK(received == std::size_t{writers} * per_writer);
    for (const auto& end : ends) CHECK_FALSE(end);
    CHECK(ps.peak_queued_bytes() <= high);
}

PORTICO_IO_TEST_CASE("a peer that never reads: with the fail policy writes fail at once and the stream recovers",
                     "[packet_stream_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    REQUIRE_FALSE(server.set_send_buffer_size(16 * 1024).error());
    REQUIRE_FALSE(client.set_receive_buffer_size(16 * 1024).error());
    packet_stream<tcp_socket> ps(
        std::move(server),
        {.send = {.high_watermark = high, .low_watermark = high / 2, .policy = overflow_policy::fail}});
    packet_stream<tcp_socket> peer(std::move(client));
    std::atomic<std::size_t> accepted{0};
    std::vector<std::error_code> ends(writers);
    portico::task_group group;
    for (auto& end : ends) group.spawn(flood(ps, 20, accepted, end));
    // Every writer ran until it had a packet queued or was refused.
    std::size_t refused = 0;
    for (const auto& end : ends) refused += end == errc::send_queue_full;
    CHECK(refused > 0);
    CHECK(ps.peak_queued_bytes() <= high);
    CHECK_FALSE(ps.is_closed());
    // The peer starts reading: the queued writers carry on to the end (or to
    // another refusal), and every accepted packet arrives intact.
    std::size_t received = 0;
    bool intact = true;
    auto drain = [&]() -> task<> {
        for (;;) {
            auto [read_ec, p] = co_await peer.read_packet();
            if (read_ec || p.type == 2) co_return;
            intact = intact && p.type == 1 && p.body.size() == 1020;
            ++received;
        }
    };
    auto finish = [&]() -> task<> {
        co_await group.join();
        auto [ec] = co_await ps.write_packet(2, std::string("end"));
        CHECK_FALSE(ec);
    };
    co_await portico::when_all(drain(), finish());
    CHECK(intact);
    CHECK(received == accepted.load());
}

PORTICO_IO_TEST_CASE("a peer that never reads: with the disconnect policy only its stream closes",
                     "[packet_stream_tcp]")
{
    auto [slow_client, slow_server] = co_await portico::test::connected_pair(ctx);
    auto [good_client, good_server] = co_await portico::test::connected_pair(ctx);
    REQUIRE_FALSE(slow_server.set_send_buffer_size(16 * 1024).error());
    REQUIRE_FALSE(slow_client.set_receive_buffer_size(16 * 1024).error());
    const portico::packet_stream_options options{
        .send = {.high_watermark = high, .low_watermark = high / 2, .policy = overflow_policy::disconnect}};
    packet_stream<tcp_socket> slow(std::move(slow_server), options);
    packet_stream<tcp_socket> good(std::move(good_server), options);
    packet_stream<tcp_socket> good_peer(std::move(good_client));
    std::atomic<std::size_t> accepted{0};
    std::vector<std::error_code> ends(writers);
    portico::task_group group;
    for (auto& end : ends) group.spawn(flood(slow, 1000, accepted, end));
    co_await group.join(); // the overflow closed the stream: every writer failed
    for (const auto& end : ends) CHECK(end == errc::send_queue_full);
    CHECK(slow.close_reason() == errc::send_queue_full);
    auto [read_ec, p] = co_await slow.read_packet();
    CHECK(read_ec == errc::send_queue_full);
    // The other stream with the same options is untouched.
    auto [write_ec] = co_await good.write_packet(5, std::string("still here"));
    CHECK_FALSE(write_ec);
    auto [good_ec, got] = co_await good_peer.read_packet();
    CHECK_FALSE(good_ec);
    CHECK(got.type == 5);
    CHECK_FALSE(good.is_closed());
}

PORTICO_IO_TEST_CASE(
    "steady state: no heap allocation per packet, under 0.2 receive calls per packet with 16 in flight",
    "[packet_stream_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    constexpr int depth = 16, warm_up = 20, measured = 200;
    auto echo = [](tcp_socket s) -> task<> {
        packet_stream<tcp_socket> ps(std::move(s));
        for (;;) {
            auto [ec, p] = co_await ps.read_packet();
            if (ec) co_return;
            auto [write_ec] = co_await ps.write_packet(p.type, p.body);
            if (write_ec) co_return;
        }
    };
    std::uint64_t allocations = 0, recv_calls = 0;
    int failures = 0;
    auto pinger = [&](tcp_socket s) -> task<> {
        packet_stream<tcp_socket> ps(std::move(s));
        std::array<std::array<std::byte, 36>, depth> burst; // 16 packets of 32-byte bodies
        std::uint64_t allocations_before = 0, recv_before = 0;
        for (int round = 0; round < warm_up + measured; ++round) {
            if (round == warm_up) {
                allocations_before = portico::test::heap_allocations();
                recv_before = ctx.statistics().recv_calls;
            }
            for (int i = 0; i < depth; ++i) {
                burst[i].fill(static_cast<std::byte>(round + i));
                (void)portico::encode_header(packet_format{}, static_cast<std::uint32_t>(i), 32, burst[i]);
            }
            // All 16 in flight at once: one gather write of the whole burst.
            auto [write_ec, n] = co_await ps.next_layer().write_all(buffer(burst.data(), sizeof burst));
            if (write_ec) ++failures;
            for (int i = 0; i < depth; ++i) {
                auto [ec, p] = co_await ps.read_packet();
                if (ec || p.type != static_cast<std::uint32_t>(i) || p.body.size() != 32 ||
                    p.body[0] != static_cast<std::byte>(round + i)) {
                    ++failures;
                }
            }
        }
        allocations = portico::test::heap_allocations() - allocations_before;
        recv_calls = ctx.statistics().recv_calls - recv_before;
        (void)ps.next_layer().shutdown_send();
    };
    co_await portico::when_all(echo(std::move(server)), pinger(std::move(client)));
    const double packets = 2.0 * depth * measured; // received by the echo, then by the pinger
    UNSCOPED_INFO("receive calls per packet: " << static_cast<double>(recv_calls) / packets);
    CHECK(failures == 0);
    CHECK(allocations == 0);
    CHECK(static_cast<double>(recv_calls) / packets < 0.2);
}

PORTICO_IO_TEST_CASE("a stop request on a pending read_packet closes the stream", "[packet_stream_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> ps(std::move(server));
    auto [ec, p] = co_await portico::with_timeout(ctx, 50ms, ps.read_packet());
    CHECK(ec == errc::timed_out);
    CHECK(ps.is_closed());
    auto [again, q] = co_await ps.read_packet();
    CHECK(again == errc::operation_aborted);
    auto [write_ec] = co_await ps.write_packet(1, std::string("x"));
    CHECK(write_ec == errc::operation_aborted);
}
