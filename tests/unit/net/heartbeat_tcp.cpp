// packet_stream's heartbeat over real tcp_sockets, with 1 and 4 pool threads
// (issue 14): zombies dropped within the timeout plus one interval, talkers
// never pinged, answering peers and two heartbeats against each other up,
// 1,000 streams of which a tenth are zombies, the heartbeat beside
// idle_timeout, order under a ping storm, no allocation, and what a
// heartbeat costs an idle stream at 10,000 streams. The exact behaviour on
// a manual clock is in unit/framing/packet_stream_heartbeat.cpp.
#include <portico/framing/packet_stream.hpp>
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/frame_cache.hpp>
#include <portico/io_context.hpp>
#include <portico/thread_pool.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/allocation_count.hpp"
#include "support/loopback.hpp"
#include "support/mock_stream.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <numeric>
#include <vector>

using namespace std::chrono_literals;

using portico::buffer;
using portico::errc;
using portico::packet_format;
using portico::packet_stream;
using portico::packet_stream_options;
using portico::task;
using portico::tcp_socket;

namespace {

using steady = std::chrono::steady_clock;

constexpr std::uint32_t chat = 1, ping = 90, pong = 91;

packet_stream_options heartbeat(std::chrono::milliseconds interval, std::chrono::milliseconds timeout)
{
    return {.heartbeat = {.interval = interval, .timeout = timeout, .ping_type = ping, .pong_type = pong}};
}

/// Reads until an error; yields it (and counts the packets returned).
task<std::error_code> read_until_error(packet_stream<tcp_socket>& ps, std::size_t* packets = nullptr)
{
    for (;;) {
        auto [ec, p] = co_await ps.read_packet();
        if (ec) co_return ec;
        if (packets != nullptr) ++*packets;
    }
}

/// A peer with no heartbeat of its own that answers every ping by hand,
/// until its stream fails; counts the pings.
task<> answer_by_hand(packet_stream<tcp_socket>& ps, std::size_t& pings)
{
    for (;;) {
        auto [ec, p] = co_await ps.read_packet();
        if (ec) co_return;
        if (p.type != ping) continue;
        ++pings;
        auto [write_ec] = co_await ps.write_packet(pong, std::span<const portico::const_buffer>{});
        if (write_ec) co_return;
    }
}

} // namespace

PORTICO_IO_TEST_CASE("heartbeat over tcp: a zombie (connection open, nothing answered) is dropped within the timeout "
                     "plus one interval with heartbeat_timeout; a peer that only answers pings stays",
                     "[heartbeat_tcp]")
{
    constexpr std::chrono::milliseconds interval = 500ms, timeout = 2s;
    auto [zombie_client, zombie_server] = co_await portico::test::connected_pair(ctx);
    auto [live_client, live_server] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> zombie(std::move(zombie_server), heartbeat(interval, timeout));
    packet_stream<tcp_socket> live(std::move(live_server), heartbeat(interval, timeout));
    packet_stream<tcp_socket> answerer(std::move(live_client));

    std::error_code zombie_end, live_end;
    steady::duration zombie_silent_for{};
    bool live_open_after = false;
    std::size_t answered = 0;
    auto zombie_side = [&]() -> task<> {
        // One packet, then the peer says nothing more and reads nothing: its
        // socket stays open (zombie_client lives until the test ends).
        std::array<std::byte, 4> hello;
        (void)portico::encode_header(packet_format{}, chat, 0, hello);
        (void)co_await zombie_client.write_all(buffer(hello));
        steady::time_point last = steady::now();
        for (;;) {
            auto [ec, p] = co_await zombie.read_packet();
            if (ec) {
                zombie_end = ec;
                break;
            }
            last = steady::now();
        }
        zombie_silent_for = steady::now() - last;
        // The answering peer is watched for four more intervals.
        co_await ctx.sleep_for(4 * interval);
        live_open_after = !live.is_closed();
        live.close();
        answerer.close();
    };
    auto live_side = [&]() -> task<> { live_end = co_await read_until_error(live); };
    co_await portico::when_all(zombie_side(), live_side(), answer_by_hand(answerer, answered));

    CHECK(zombie_end == errc::heartbeat_timeout);
    CHECK(zombie.close_reason() == errc::heartbeat_timeout);
    CHECK(zombie_silent_for >= timeout);
    CHECK(zombie_silent_for <= timeout + interval);
    CHECK(live_open_after);
    CHECK(live_end == errc::operation_aborted);
    CHECK(answered >= 4); // asked about once per interval for over 4 s
}

PORTICO_IO_TEST_CASE("heartbeat over tcp: a peer that keeps sending is never pinged (it counts 0 pings)",
                     "[heartbeat_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    // An interval far above the talker's 50 ms: a machine that stalls for
    // most of a second must not turn into a ping.
    packet_stream<tcp_socket> ps(std::move(server), heartbeat(1s, 3s));
    packet_stream<tcp_socket> peer(std::move(client));
    std::size_t received = 0, pings = 0, other = 0;
    std::error_code server_end, peer_end;
    auto server_side = [&]() -> task<> {
        server_end = co_await read_until_error(ps, &received);
        (void)ps.next_layer().shutdown_send(); // the peer's reader ends too
    };
    auto talker = [&]() -> task<> {
        for (int i = 0; i < 40; ++i) { // 2 s: every 50 ms, a twentieth of the interval
            auto [ec] = co_await peer.write_packet(chat, std::string_view("still here"));
            if (ec) co_return;
            co_await ctx.sleep_for(50ms);
        }
        (void)peer.next_layer().shutdown_send();
    };
    auto listener = [&]() -> task<> {
        for (;;) {
            auto [ec, p] = co_await peer.read_packet();
            if (ec) {
                peer_end = ec;
                co_return;
            }
            ++(p.type == ping ? pings : other);
        }
    };
    co_await portico::when_all(server_side(), talker(), listener());
    CHECK(received == 40);
    CHECK(server_end == errc::eof);
    CHECK(peer_end == errc::eof);
    CHECK(pings == 0);
    CHECK(other == 0);
}

PORTICO_IO_TEST_CASE("heartbeat over tcp: two streams heartbeating each other stay up, about one ping and one pong "
                     "per interval between them",
                     "[heartbeat_tcp]")
{
    constexpr auto interval = 250ms;
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> a(std::move(server), heartbeat(interval, 1s));
    packet_stream<tcp_socket> b(std::move(client), heartbeat(interval, 1s));
    std::size_t a_packets = 0, b_packets = 0;
    std::error_code a_end, b_end;
    bool both_open = false;
    auto watch = [&]() -> task<> {
        co_await ctx.sleep_for(10 * interval);
        both_open = !a.is_closed() && !b.is_closed();
        a.close();
        b.close();
    };
    auto read_a = [&]() -> task<> { a_end = co_await read_until_error(a, &a_packets); };
    auto read_b = [&]() -> task<> { b_end = co_await read_until_error(b, &b_packets); };
    co_await portico::when_all(watch(), read_a(), read_b());
    CHECK(both_open);
    CHECK(a_end == errc::operation_aborted);
    CHECK(b_end == errc::operation_aborted);
    CHECK(a_packets == 0); // pings and pongs never reach the caller
    CHECK(b_packets == 0);
    const auto writes = a.write_calls() + b.write_calls();
    UNSCOPED_INFO("writes by both sides in 10 intervals: " << writes);
    // In steady state one side pings and the other answers: 2 per interval.
    // Both pinging every interval, each answered, would be 4.
    CHECK(writes >= 10);
    CHECK(writes <= 32);
}

PORTICO_CO_TEST_CASE("heartbeat over tcp: 1,000 streams, a tenth of them zombies: exactly the zombies are dropped",
                     "[heartbeat_tcp][scale]")
{
    constexpr std::size_t n = 1000;
    // 1,900 heartbeating streams start together here, so they all ping
    // within the same few milliseconds, every interval: a live stream must
    // get through that burst of writes before its timeout, under Wine (where
    // one wineserver process carries every socket call of every test
    // program), on a machine that other test programs keep busy. One CI run
    // saw 5 of 900 live streams miss a margin of 2 s (1 s interval, 3 s
    // timeout); three programs at once miss it by hundreds. A 2 s interval
    // halves the bursts' rate and a 6 s margin triples the room: the test is
    // about which streams go, not how fast the machine is. How soon a
    // zombie goes is the concern of the tests above.
    constexpr std::chrono::milliseconds interval = 2s, timeout = 8s;
    portico::test::raw_listener listener;
    std::vector<packet_stream<tcp_socket>> servers, clients;
    std::vector<tcp_socket> zombies;
    servers.reserve(n);
    clients.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        tcp_socket c(ctx);
        auto [ec] = co_await c.connect(listener.local());
        REQUIRE_FALSE(ec);
        servers.emplace_back(listener.accept(ctx), heartbeat(interval, timeout));
        if (i % 10 == 0) {
            zombies.push_back(std::move(c)); // open, and never read again
        } else {
            clients.emplace_back(std::move(c), heartbeat(interval, timeout));
        }
    }
    std::vector<std::error_code> ends(n);
    std::vector<steady::time_point> ended_at(n);
    std::atomic<std::size_t> dropped{0};
    portico::task_group readers;
    const auto started = steady::now();
    for (std::size_t i = 0; i < n; ++i) {
        readers.spawn([](packet_stream<tcp_socket>& s, std::error_code& end, steady::time_point& at,
                         std::atomic<std::size_t>& d) -> task<> {
            end = co_await read_until_error(s);
            at = steady::now();
            if (end == errc::heartbeat_timeout) ++d;
        }(servers[i], ends[i], ended_at[i], dropped));
    }
    for (auto& c : clients) {
        readers.spawn([](packet_stream<tcp_socket>& s) -> task<> { (void)co_await read_until_error(s); }(c));
    }
    // Until every zombie is gone (at most a few timeouts), then three more
    // intervals in which no live stream may go.
    while (dropped.load() < n / 10 && steady::now() - started < 10 * timeout) co_await ctx.sleep_for(50ms);
    const auto zombies_gone_after = steady::now() - started;
    co_await ctx.sleep_for(3 * interval);
    std::vector<std::size_t> wrong;
    for (std::size_t i = 0; i < n; ++i) {
        const bool zombie = i % 10 == 0;
        const bool dropped_here = servers[i].close_reason() == errc::heartbeat_timeout;
        if (zombie != dropped_here || (!zombie && servers[i].is_closed())) wrong.push_back(i);
    }
    const auto dropped_before_close = dropped.load();
    for (auto& s : servers) s.close();
    for (auto& c : clients) c.close();
    co_await readers.join();
    UNSCOPED_INFO("every zombie dropped "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(zombies_gone_after).count()
                  << " ms after the readers started");
    // Each reader's end time is read only now that every reader is done.
    for (const auto i : wrong)
        UNSCOPED_INFO("stream " << i << (i % 10 == 0 ? " (zombie)" : " (live)") << " ended with " << ends[i].message()
                                << " "
                                << std::chrono::duration_cast<std::chrono::milliseconds>(ended_at[i] - started).count()
                                << " ms after the readers started");
    CHECK(dropped_before_close == n / 10);
    CHECK(wrong.empty());
    for (std::size_t i = 0; i < n; ++i)
        CHECK(ends[i] == (i % 10 == 0 ? errc::heartbeat_timeout : errc::operation_aborted));
}

PORTICO_IO_TEST_CASE("heartbeat over tcp with idle_timeout: a peer that only answers pings is dropped as idle, "
                     "not as dead",
                     "[heartbeat_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    auto options = heartbeat(250ms, 1s);
    options.idle_timeout = 1500ms;
    packet_stream<tcp_socket> ps(std::move(server), options);
    packet_stream<tcp_socket> peer(std::move(client), heartbeat(250ms, 1s)); // answers, says nothing
    std::error_code end;
    steady::duration lasted{};
    auto server_side = [&]() -> task<> {
        const auto start = steady::now();
        end = co_await read_until_error(ps);
        lasted = steady::now() - start;
        peer.close();
    };
    auto peer_side = [&]() -> task<> { (void)co_await read_until_error(peer); };
    co_await portico::when_all(server_side(), peer_side());
    CHECK(end == errc::idle_timeout);
    CHECK(lasted >= 1500ms);
    CHECK(lasted < 2500ms);
}

PORTICO_IO_TEST_CASE("heartbeat over tcp: pings every 2 ms while 4 writers stream 2,000 packets: the pongs go out "
                     "between whole packets, every writer's order is kept",
                     "[heartbeat_tcp]")
{
    constexpr std::uint32_t writers = 4, per_writer = 500;
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> ps(std::move(server), heartbeat(250ms, 5s));
    packet_stream<tcp_socket> peer(std::move(client));
    std::atomic<bool> done{false};
    auto writer = [&](std::uint32_t id) -> task<> {
        co_await ctx.schedule();
        std::vector<std::byte> body(1024);
        for (std::uint32_t seq = 0; seq < per_writer; ++seq) {
            std::memcpy(body.data(), &id, 4);
            std::memcpy(body.data() + 4, &seq, 4);
            auto [ec] = co_await ps.write_packet(id, body);
            if (ec) co_return;
        }
    };
    auto all_writers = [&]() -> task<> {
        portico::task_group group;
        for (std::uint32_t id = 0; id < writers; ++id) group.spawn(writer(id));
        co_await group.join();
    };
    // The server must read for its pings to be answered. It ends its side
    // only after the peer's (eof): a ping still coming would be answered by
    // a pong, which a socket already shut for sending refuses.
    std::error_code server_end;
    auto server_reader = [&]() -> task<> {
        server_end = co_await read_until_error(ps);
        (void)ps.next_layer().shutdown_send();
    };
    auto pinger = [&]() -> task<> {
        while (!done.load()) {
            auto [ec] = co_await peer.write_packet(ping, std::span<const portico::const_buffer>{});
            if (ec) co_return;
            co_await ctx.sleep_for(2ms);
        }
        (void)peer.next_layer().shutdown_send();
    };
    std::vector<std::uint32_t> next(writers, 0);
    std::size_t bad = 0, pongs = 0;
    std::error_code peer_end;
    auto reader = [&]() -> task<> {
        for (;;) {
            auto [ec, p] = co_await peer.read_packet();
            if (ec) {
                peer_end = ec;
                break;
            }
            if (p.type == pong) {
                pongs += p.body.empty() ? 1 : 0;
                continue;
            }
            std::uint32_t id = 0, seq = 0;
            if (p.body.size() != 1024) {
                ++bad;
                continue;
            }
            std::memcpy(&id, p.body.data(), 4);
            std::memcpy(&seq, p.body.data() + 4, 4);
            if (id >= writers || p.type != id || seq != next[id]) {
                ++bad;
                continue;
            }
            ++next[id];
            // Everything arrived: the pinger stops and ends the peer's side.
            if (std::accumulate(next.begin(), next.end(), std::uint32_t{0}) == writers * per_writer) done = true;
        }
        done = true;
    };
    co_await portico::when_all(all_writers(), server_reader(), pinger(), reader());
    CHECK(bad == 0);
    for (auto n : next) CHECK(n == per_writer);
    CHECK(peer_end == errc::eof);
    CHECK(server_end == errc::eof);
    CHECK(pongs >= 1);
}

PORTICO_IO_TEST_CASE("heartbeat over tcp: idle streams pinging and answering every 20 ms allocate nothing",
                     "[heartbeat_tcp]")
{
    auto [client, server] = co_await portico::test::connected_pair(ctx);
    packet_stream<tcp_socket> a(std::move(server), heartbeat(20ms, 2s));
    packet_stream<tcp_socket> b(std::move(client), heartbeat(20ms, 2s));
    std::optional<std::uint64_t> allocations;
    std::uint64_t writes = 0;
    auto watch = [&]() -> task<> {
        co_await ctx.sleep_for(300ms); // warm up: timers, frames
        const auto before = portico::test::allocations_now();
        const auto writes_before = a.write_calls() + b.write_calls();
        co_await ctx.sleep_for(1s);
        if (const auto after = portico::test::allocations_now(); before && after) allocations = *after - *before;
        writes = a.write_calls() + b.write_calls() - writes_before;
        a.close();
        b.close();
    };
    auto read_a = [&]() -> task<> { (void)co_await read_until_error(a); };
    auto read_b = [&]() -> task<> { (void)co_await read_until_error(b); };
    co_await portico::when_all(watch(), read_a(), read_b());
    UNSCOPED_INFO("pings and pongs written in 1 s: " << writes);
    CHECK(writes >= 20);
    if (allocations) {
        UNSCOPED_INFO("heap allocations: " << *allocations);
        CHECK(*allocations <= portico::test::cache_growth_allowance);
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}

namespace {

/// A stream that reads and writes like the mock (reads wait until closed),
/// on the real io_context's timers: for measuring what the watchdog costs
/// without 20,000 sockets.
struct idle_stream {
    portico::test::mock_stream inner;
    portico::io_context* ctx;

    auto read_some(std::span<portico::mutable_buffer> buffers) { return inner.read_some(buffers); }
    template <class Sequence>
    auto write_some(const Sequence& buffers)
    {
        return inner.write_some(buffers);
    }
    portico::io_context& context() const noexcept { return *ctx; }
};

struct idle_cost {
    std::optional<std::size_t> bytes_per_stream; // where the heap is counted
    std::uint64_t timers_started = 0;
    std::uint64_t pings = 0;
};

/// Live heap bytes per stream, with `n` streams each waiting in read_packet
/// with `options`; and the timers they started in `run_for`.
task<idle_cost> cost_of(portico::io_context& ctx, std::size_t n, packet_stream_options options,
                        std::chrono::milliseconds run_for)
{
    co_await ctx.schedule();
    std::vector<packet_stream<idle_stream>> streams;
    streams.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        portico::test::mock_stream inner;
        inner.hold_reads();
        streams.emplace_back(idle_stream{inner, &ctx}, options);
    }
    const auto before = portico::test::live_bytes_uncached();
    const auto timers_before = ctx.statistics().timers_started;
    portico::task_group readers;
    for (auto& s : streams) {
        readers.spawn([](packet_stream<idle_stream>& ps) -> task<> {
            auto [ec, p] = co_await ps.read_packet();
            (void)ec;
        }(s));
    }
    co_await ctx.sleep_for(run_for);
    idle_cost cost;
    if (const auto now = portico::test::live_bytes_uncached(); before && now)
        cost.bytes_per_stream = (*now - *before) / n;
    cost.timers_started = ctx.statistics().timers_started - timers_before;
    for (auto& s : streams) s.close();
    co_await readers.join();
    for (auto& s : streams) cost.pings += s.next_layer().inner.written().size() / 4; // header-only pings
    co_return cost;
}

/// cost_of() on a fresh context served by `threads` threads (a context's
/// timer storage, kept or trimmed after an earlier run, would blur the
/// count), with every coroutine frame from the heap, counted where it is
/// used.
idle_cost measure(unsigned threads, std::size_t n, packet_stream_options options, std::chrono::milliseconds run_for)
{
    const std::size_t limit = portico::frame_cache_limit();
    (void)portico::set_frame_cache_limit(0);
    idle_cost cost;
    {
        portico::io_context ctx;
        portico::thread_pool pool(ctx, threads);
        cost = portico::sync_wait(cost_of(ctx, n, options, run_for));
        ctx.stop();
        pool.join();
    }
    (void)portico::set_frame_cache_limit(limit);
    return cost;
}

} // namespace

TEST_CASE("heartbeat: what it costs an idle stream at 10,000 streams is the watchdog idle_timeout already has, "
          "one frame and one timer, and no timer per ping",
          "[heartbeat_tcp][cost][scale]")
{
    constexpr std::size_t n = 10'000;
    for (unsigned threads : {1u, 4u}) {
        INFO("pool threads: " << threads);
        const idle_cost plain = measure(threads, n, {}, 100ms);
        const idle_cost idle = measure(threads, n, {.idle_timeout = 1h}, 100ms);
        const idle_cost beat = measure(threads, n, heartbeat(1h, 2h), 100ms);
        // Pinging: 10,000 streams, a ping each every 200 ms for 1 s.
        const idle_cost pinging = measure(threads, n, heartbeat(200ms, 1h), 1s);
        INFO("10,000 streams pinging every 200 ms for 1 s: " << pinging.pings << " pings, " << pinging.timers_started
                                                             << " timers started");
        INFO("sizeof(stream_core<tcp_socket>): "
             << sizeof(portico::detail::stream_core<tcp_socket>) << " bytes, of which the heartbeat's times "
             << sizeof(portico::detail::heartbeat_monitor<steady>) << "; its packets, made with a heartbeat, "
             << 2 * sizeof(portico::detail::send_node));
        // The heartbeat reuses the watchdog: waiting, it costs what
        // idle_timeout costs. (Its ping and pong are made with the stream,
        // before `before`: sizeof above.)
        if (plain.bytes_per_stream && idle.bytes_per_stream && beat.bytes_per_stream) {
            INFO("live heap per idle stream: " << *plain.bytes_per_stream << " bytes with no timeout, "
                                               << *idle.bytes_per_stream << " with idle_timeout, "
                                               << *beat.bytes_per_stream << " with a heartbeat");
            CHECK(*beat.bytes_per_stream + 8 >= *idle.bytes_per_stream);
            CHECK(*beat.bytes_per_stream <= *idle.bytes_per_stream + 8);
            CHECK(*beat.bytes_per_stream <= *plain.bytes_per_stream + 1024);
        } else {
            WARN("the heap is not counted in this build (TSan)");
        }
        // One timer per watchdog wake: per ping, plus each stream's first
        // sleep and the one its close cancelled; never a timer per ping on
        // top of the watchdog's. (How many pings a loaded machine manages
        // in the second is not the point.)
        CHECK(pinging.pings >= n);
        CHECK(pinging.timers_started <= pinging.pings + 2 * n);
    }
}
