// packet_stream's parking over a real tcp_socket (packet_stream_options::
// park_after): a stream whose peer is quiet waits for it holding no receive
// ring, with a zero-byte receive; a busy one reads straight into its ring.
#include <portico/framing/packet_stream.hpp>
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/io_context.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/allocation_count.hpp"
#include "support/loopback.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

using namespace std::chrono_literals;

using portico::errc;
using portico::io_result;
using portico::packet_stream;
using portico::packet_stream_options;
using portico::task;
using portico::tcp_socket;

namespace {

/// The server reads a packet and echoes it; the client sends packet `type`
/// after `pause` (the server waiting meanwhile) and reads the echo.
task<bool> exchange(packet_stream<tcp_socket>& client, packet_stream<tcp_socket>& server, std::uint32_t type,
                    std::chrono::milliseconds pause = {})
{
    auto echo = [](packet_stream<tcp_socket>& s) -> task<bool> {
        auto [ec, p] = co_await s.read_packet();
        if (ec) co_return false;
        auto [write_ec] = co_await s.write_packet(p.type, p.body);
        co_return !write_ec;
    };
    auto ask = [](packet_stream<tcp_socket>& s, std::uint32_t t, std::chrono::milliseconds wait) -> task<bool> {
        if (wait.count() > 0) {
            auto [slept] = co_await s.next_layer().context().sleep_for(wait);
            if (slept) co_return false;
        }
        auto [write_ec] = co_await s.write_packet(t, std::string_view("ping"));
        if (write_ec) co_return false;
        auto [ec, p] = co_await s.read_packet();
        co_return !ec && p.type == t;
    };
    auto [answered, asked] = co_await portico::when_all(echo(server), ask(client, type, pause));
    co_return answered&& asked;
}

} // namespace

PORTICO_IO_TEST_CASE("a stream whose peer is quiet waits for it holding no receive ring", "[packet_stream_park]")
{
    auto [a, b] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> client(std::move(a));
    packet_stream<tcp_socket> server(std::move(b));
    CHECK(server.receive_storage_bytes() == 0); // nothing allocated before the first read

    // One exchange: a first wait is never busy, so the server parked for it.
    const bool first = co_await exchange(client, server, 1);
    REQUIRE(first);
    CHECK(server.parked_waits() == 1);

    // The server waits again, parked: it gave its ring back.
    auto next = [](packet_stream<tcp_socket>& s) -> task<io_result<std::uint32_t>> {
        auto [ec, p] = co_await s.read_packet();
        co_return io_result<std::uint32_t>{ec, ec ? 0 : p.type};
    };
    auto wait_then_send = [](packet_stream<tcp_socket>& s, packet_stream<tcp_socket>& waiting,
                             std::size_t& held) -> task<bool> {
        // The server's read is parked before this runs: when_all started it first.
        held = waiting.receive_storage_bytes();
        auto [ec] = co_await s.write_packet(2, std::string_view("wake"));
        co_return !ec;
    };
    std::size_t held_while_waiting = 1;
    auto [got, sent] = co_await portico::when_all(next(server), wait_then_send(client, server, held_while_waiting));
    CHECK(sent);
    CHECK_FALSE(got.error());
    CHECK(got.value_unchecked() == 2);
    CHECK(held_while_waiting == 0);
    CHECK(server.parked_waits() == 2);
    // Woken, it took a ring again to read the packet.
    CHECK(server.receive_storage_bytes() == 2 * server.options().receive_buffer);
}

PORTICO_IO_TEST_CASE("a busy stream reads straight into its ring: one receive per packet", "[packet_stream_park]")
{
    auto [a, b] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> client(std::move(a));
    packet_stream<tcp_socket> server(std::move(b));
    constexpr unsigned rounds = 200;
    const auto before = ctx.statistics();
    for (unsigned i = 0; i < rounds; ++i) {
        const bool ok = co_await exchange(client, server, i & 0xFF);
        REQUIRE(ok);
    }
    const auto after = ctx.statistics();
    INFO("parked waits: server " << server.parked_waits() << ", client " << client.parked_waits() << "; "
                                 << after.recv_calls - before.recv_calls << " receives");
    // Only the first waits, before the conversation made each side busy.
    CHECK(server.parked_waits() <= 2);
    CHECK(client.parked_waits() <= 2);
    // One receive per packet on each side (parked waits cost one more each).
    CHECK(after.recv_calls - before.recv_calls <= 2 * rounds + server.parked_waits() + client.parked_waits());
}

PORTICO_IO_TEST_CASE("a busy stream whose peer pauses longer than park_after parks again", "[packet_stream_park]")
{
    auto [a, b] = co_await portico::test::connected_pair(ctx);
    packet_stream_options options;
    options.park_after = 50ms;
    packet_stream<tcp_socket> client(std::move(a), options);
    packet_stream<tcp_socket> server(std::move(b), options);
    for (std::uint32_t i = 0; i < 10; ++i) {
        const bool ok = co_await exchange(client, server, i);
        REQUIRE(ok);
    }
    const std::uint64_t busy_parks = server.parked_waits();
    CHECK(busy_parks <= 2);

    // The server waits through a pause four times park_after: that wait
    // was not quick, so the next one parks.
    const bool after_pause = co_await exchange(client, server, 100, 200ms);
    REQUIRE(after_pause);
    const bool next = co_await exchange(client, server, 101);
    REQUIRE(next);
    CHECK(server.parked_waits() == busy_parks + 1);
}

PORTICO_IO_TEST_CASE("park_after zero never parks", "[packet_stream_park]")
{
    auto [a, b] = co_await portico::test::connected_pair(ctx);
    packet_stream_options options;
    options.park_after = 0ms;
    packet_stream<tcp_socket> client(std::move(a), options);
    packet_stream<tcp_socket> server(std::move(b), options);
    for (std::uint32_t i = 0; i < 3; ++i) {
        const bool ok = co_await exchange(client, server, i);
        REQUIRE(ok);
    }
    CHECK(server.parked_waits() == 0);
    CHECK(client.parked_waits() == 0);
}

PORTICO_IO_TEST_CASE("a parked wait ends with the peer's close, reset, or the stream's own close",
                     "[packet_stream_park]")
{
    SECTION("the peer closes: eof")
    {
        auto [a, b] = co_await portico::test::connected_pair(ctx);
        packet_stream<tcp_socket> server(std::move(b));
        CHECK_FALSE(a.shutdown_send().error());
        auto [ec, p] = co_await server.read_packet();
        CHECK(ec == errc::eof);
        CHECK(server.parked_waits() == 1);
    }
    SECTION("the peer resets while it waits: connection_reset")
    {
        auto [a, b] = co_await portico::test::connected_pair(ctx);
        packet_stream<tcp_socket> server(std::move(b));
        auto read = [](packet_stream<tcp_socket>& s) -> task<std::error_code> {
            auto [ec, p] = co_await s.read_packet();
            co_return ec;
        };
        auto reset = [](tcp_socket& s) -> task<> {
            s.close_abortive(); // linger 0: RST instead of FIN
            co_return;
        };
        // when_all starts the read until its zero-byte receive is pending.
        auto [ec, done] = co_await portico::when_all(read(server), reset(a));
        (void)done;
        CHECK(ec == errc::connection_reset);
        CHECK(server.parked_waits() == 1);
    }
    SECTION("the stream is closed while parked: operation_aborted")
    {
        auto [a, b] = co_await portico::test::connected_pair(ctx);
        packet_stream<tcp_socket> server(std::move(b));
        auto read = [](packet_stream<tcp_socket>& s) -> task<std::error_code> {
            auto [ec, p] = co_await s.read_packet();
            co_return ec;
        };
        auto close_it = [](packet_stream<tcp_socket>& s) -> task<> {
            s.close();
            co_return;
        };
        auto [ec, closed] = co_await portico::when_all(read(server), close_it(server));
        (void)closed;
        CHECK(ec == errc::operation_aborted);
        CHECK(server.parked_waits() == 1);
    }
}

namespace {

/// The server answers one packet with queue_packet() and then reads on: the
/// second read waits for the client, which first checks what the server
/// keeps while it waits (`spare`), then wakes it. With `sync`, the server
/// also awaits a write_packet() after the copy, so that the copy's block is
/// back before the read begins; without, the block comes back while the
/// read already waits.
task<std::size_t> spare_while_waiting(portico::io_context& ctx, packet_stream<tcp_socket>& client,
                                      packet_stream<tcp_socket>& server, bool sync)
{
    auto serve = [](packet_stream<tcp_socket>& s, bool sync_first) -> task<bool> {
        auto [ec, p] = co_await s.read_packet();
        if (ec) co_return false;
        if (s.queue_packet(p.type, p.body)) co_return false;
        if (sync_first) {
            auto [write_ec] = co_await s.write_packet(99, std::string_view("sync"));
            if (write_ec) co_return false;
        }
        auto [next_ec, next] = co_await s.read_packet();
        co_return !next_ec && next.type == 3;
    };
    auto ask = [](portico::io_context& c, packet_stream<tcp_socket>& s, packet_stream<tcp_socket>& waiting,
                  bool sync_first, std::size_t& spare) -> task<bool> {
        auto [write_ec] = co_await s.write_packet(1, std::string_view("copy me"));
        if (write_ec) co_return false;
        auto [ec, echo] = co_await s.read_packet();
        if (ec || echo.type != 1) co_return false;
        if (sync_first) {
            auto [sync_ec, synced] = co_await s.read_packet();
            if (sync_ec || synced.type != 99) co_return false;
        }
        // The copy's bytes arrived; the server's driver hands its block back
        // when its write completes, a moment later: wait for that (for a
        // time, not a number of turns: on io_uring a turn is no system call).
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (waiting.queued_bytes() != 0 && std::chrono::steady_clock::now() < give_up) co_await c.schedule();
        if (waiting.queued_bytes() != 0) co_return false;
        spare = waiting.spare_send_bytes();
        auto [wake_ec] = co_await s.write_packet(3, std::string_view("wake"));
        co_return !wake_ec;
    };
    std::size_t spare = 1;
    auto [served, asked] = co_await portico::when_all(serve(server, sync), ask(ctx, client, server, sync, spare));
    CHECK(served);
    CHECK(asked);
    co_return spare;
}

} // namespace

PORTICO_IO_TEST_CASE("a parked stream keeps no spare send block; a stream that never parks keeps one",
                     "[packet_stream_park]")
{
    for (const bool sync : {true, false}) {
        INFO((sync ? "the block came back before the wait" : "the block came back during the wait"));
        {
            auto [a, b] = co_await portico::test::connected_pair(ctx);
            packet_stream<tcp_socket> client(std::move(a));
            packet_stream<tcp_socket> server(std::move(b));
            const std::size_t spare = co_await spare_while_waiting(ctx, client, server, sync);
            // Its first waits are never busy: the server parked for the second read.
            CHECK(server.parked_waits() == 2);
            CHECK(spare == 0);
        }
        {
            auto [a, b] = co_await portico::test::connected_pair(ctx);
            packet_stream_options never;
            never.park_after = 0ms;
            packet_stream<tcp_socket> client(std::move(a), never);
            packet_stream<tcp_socket> server(std::move(b), never);
            const std::size_t spare = co_await spare_while_waiting(ctx, client, server, sync);
            CHECK(server.parked_waits() == 0);
            CHECK(spare > 0);
        }
    }
}

PORTICO_IO_TEST_CASE("a parked stream that goes on sending reuses its send block: no allocation per packet",
                     "[packet_stream_park]")
{
    auto [a, b] = co_await portico::test::connected_pair(ctx);
    // The client never parks: its ring, taken again after each parked wait,
    // would be counted here too.
    packet_stream_options never;
    never.park_after = 0ms;
    packet_stream<tcp_socket> client(std::move(a), never);
    packet_stream<tcp_socket> server(std::move(b));
    // The server's peer never sends: its read parks for good, as a chat
    // member's who only listens.
    auto listen = [](packet_stream<tcp_socket>& s) -> task<std::error_code> {
        auto [ec, p] = co_await s.read_packet();
        co_return ec;
    };
    auto deliver = [](packet_stream<tcp_socket>& to, packet_stream<tcp_socket>& from,
                      std::optional<std::uint64_t>& allocations) -> task<bool> {
        constexpr int packets = 100;
        std::optional<std::uint64_t> before;
        for (int i = 0; i < packets; ++i) {
            // The first packet takes a block; the rest must find it again.
            if (i == 1) before = portico::test::allocations_now();
            if (to.queue_packet(7, std::string_view("news for a listener"))) co_return false;
            auto [ec, p] = co_await from.read_packet();
            if (ec || p.type != 7) co_return false;
            // Its block is back once queued_bytes() is 0 (under the same lock).
            const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (to.queued_bytes() != 0 && std::chrono::steady_clock::now() < give_up) {
                co_await to.next_layer().context().schedule();
            }
        }
        if (const auto after = portico::test::allocations_now(); before && after) allocations = *after - *before;
        to.close();
        co_return true;
    };
    std::optional<std::uint64_t> allocations;
    auto [ended, delivered] = co_await portico::when_all(listen(server), deliver(server, client, allocations));
    CHECK(ended == errc::operation_aborted);
    CHECK(delivered);
    CHECK(server.parked_waits() == 1);
    if (allocations) {
        CHECK(*allocations == 0);
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}
