#include <portico/net/udp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/deadline.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/platform.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

using namespace std::chrono_literals;
using portico::address;
using portico::address_v4;
using portico::address_v6;
using portico::buffer;
using portico::endpoint;
using portico::errc;
using portico::task;
using portico::udp_socket;

namespace {

/// A socket bound to the loopback address of the family, on a system-chosen port.
udp_socket bound(portico::io_context& ctx, bool ipv6)
{
    udp_socket s(ctx);
    const endpoint local{ipv6 ? address{address_v6::loopback()} : address{address_v4::loopback()}, 0};
    REQUIRE_FALSE(s.bind(local).error());
    return s;
}

endpoint where(const udp_socket& s) { return s.local_endpoint().value(); }

std::vector<std::byte> pattern(std::size_t size, unsigned seed)
{
    std::vector<std::byte> out(size);
    for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((i * 31 + seed) & 0xFF);
    return out;
}

} // namespace

PORTICO_IO_TEST_CASE("send_to / recv_from round trips on IPv4 and IPv6: small, 64 KiB - 28 and empty datagrams",
                     "[udp_socket]")
{
    for (bool ipv6 : {false, true}) {
        INFO((ipv6 ? "IPv6" : "IPv4"));
        udp_socket a = bound(ctx, ipv6);
        udp_socket b = bound(ctx, ipv6);
        for (std::size_t size : {std::size_t{5}, portico::max_datagram_size, std::size_t{0}}) {
            INFO("datagram of " << size << " bytes");
            const auto sent = pattern(size, static_cast<unsigned>(size));
            std::vector<std::byte> got(portico::max_datagram_size + 100, std::byte{0xEE});
            endpoint from;
            // Gathered from two pieces, scattered into one buffer.
            const std::size_t half = size / 2;
            const std::array<portico::const_buffer, 2> pieces{buffer(sent.data(), half),
                                                              buffer(sent.data() + half, size - half)};
            auto [r, w] = co_await portico::when_all(b.recv_from(buffer(got), from), a.send_to(pieces, where(b)));
            REQUIRE_FALSE(w.error());
            CHECK(w.value() == size);
            REQUIRE_FALSE(r.error());
            CHECK(r.value() == size);
            // (Not memcmp: the empty datagram's vector may have no storage.)
            CHECK(std::equal(sent.begin(), sent.end(), got.begin()));
            CHECK(from == where(a));
        }
    }
}

PORTICO_IO_TEST_CASE("a datagram larger than the buffer is flagged as truncated; the next one arrives intact",
                     "[udp_socket]")
{
    udp_socket a = bound(ctx, false);
    udp_socket b = bound(ctx, false);
    const auto big = pattern(1000, 1);
    const auto small = pattern(10, 2);
    auto [e1, n1] = co_await a.send_to(buffer(big), where(b));
    REQUIRE_FALSE(e1);
    auto [e2, n2] = co_await a.send_to(buffer(small), where(b));
    REQUIRE_FALSE(e2);

    std::array<std::byte, 100> got{};
    endpoint from;
    auto [ec, n] = co_await b.recv_from(buffer(got), from);
    CHECK(ec == errc::datagram_truncated);
    CHECK(ec == std::errc::message_size);
    CHECK(n == got.size());
    CHECK(std::memcmp(got.data(), big.data(), got.size()) == 0);
    CHECK(from == where(a));

    auto [ec2, n3] = co_await b.recv_from(buffer(got), from);
    REQUIRE_FALSE(ec2);
    CHECK(n3 == small.size());
    CHECK(std::memcmp(got.data(), small.data(), small.size()) == 0);
}

PORTICO_IO_TEST_CASE("a send to a closed port does not break the receive loop", "[udp_socket]")
{
    udp_socket server = bound(ctx, false);
    endpoint closed_port;
    {
        udp_socket gone = bound(ctx, false);
        closed_port = where(gone);
    }
    // The server answers a peer that is gone (an ICMP port unreachable comes
    // back), then a live peer sends to it: the receive must deliver that.
    auto [e1, n1] = co_await server.send_to(buffer("anyone?", 7), closed_port);
    CHECK_FALSE(e1);
    co_await ctx.sleep_for(50ms); // let the ICMP answer arrive before the next receive starts
    udp_socket live = bound(ctx, false);
    std::array<char, 16> got{};
    endpoint from;
    auto [r, w] = co_await portico::when_all(server.recv_from(buffer(got), from),
                                             live.send_to(buffer("alive", 5), where(server)));
    CHECK_FALSE(w.error());
    REQUIRE_FALSE(r.error());
    CHECK(r.value() == 5);
    CHECK(std::memcmp(got.data(), "alive", 5) == 0);
    CHECK(from == where(live));
}

PORTICO_IO_TEST_CASE("4 receivers and 4 senders on the pool, 10,000 datagrams each: intact and attributed",
                     "[udp_socket][scale]")
{
    constexpr int senders = 4, receivers = 4, per_sender = 10'000;
    std::vector<udp_socket> rx, tx;
    for (int i = 0; i < receivers; ++i) {
        rx.push_back(bound(ctx, false));
        REQUIRE_FALSE(rx.back().set_receive_buffer_size(1 << 20).error());
    }
    for (int i = 0; i < senders; ++i) tx.push_back(bound(ctx, false));

    std::atomic<int> received{0}, corrupt{0}, misattributed{0};
    auto receive = [&](udp_socket& s) -> task<> {
        co_await ctx.schedule();
        std::array<std::uint32_t, 16> d{};
        for (;;) {
            endpoint from;
            auto [ec, n] = co_await s.recv_from(buffer(d), from);
            if (ec) co_return; // cancelled at the end
            // {sender, sequence, sender's port, checksum}
            if (n != 16 || d[3] != (d[0] ^ d[1] ^ d[2] ^ 0xA5A5A5A5u)) {
                ++corrupt;
                continue;
            }
            if (d[0] >= static_cast<std::uint32_t>(senders) || d[2] != from.port()) ++misattributed;
            ++received;
        }
    };
    auto send = [&](udp_socket& s, std::uint32_t id) -> task<> {
        co_await ctx.schedule();
        const auto port = where(s).port();
        for (std::uint32_t seq = 0; seq < per_sender; ++seq) {
            const std::array<std::uint32_t, 4> d{id, seq, port, id ^ seq ^ port ^ 0xA5A5A5A5u};
            auto [ec, n] = co_await s.send_to(buffer(d), where(rx[seq % receivers]));
            if (ec) co_return;
        }
    };
    portico::task_group readers;
    for (auto& s : rx) readers.spawn(receive(s));
    {
        portico::task_group writers;
        for (int i = 0; i < senders; ++i) writers.spawn(send(tx[i], static_cast<std::uint32_t>(i)));
        co_await writers.join();
    }
    // Loss is allowed; wait until the count stops growing, then stop the readers.
    for (int last = -1; last != received.load();) {
        last = received.load();
        co_await ctx.sleep_for(100ms);
    }
    readers.request_stop();
    co_await readers.join();
    const int total = senders * per_sender;
    UNSCOPED_INFO("received " << received.load() << " of " << total);
    CHECK(corrupt.load() == 0);
    CHECK(misattributed.load() == 0);
    CHECK(received.load() > 0);
    CHECK(received.load() <= total);
}

PORTICO_IO_TEST_CASE("broadcast and multicast options are set and read back", "[udp_socket]")
{
    udp_socket v4 = bound(ctx, false);
    CHECK(v4.broadcast().value() == false);
    REQUIRE_FALSE(v4.set_broadcast(true).error());
    CHECK(v4.broadcast().value() == true);
    REQUIRE_FALSE(v4.set_multicast_hops(4).error());
    CHECK(v4.multicast_hops().value() == 4);
    REQUIRE_FALSE(v4.set_multicast_loopback(false).error());
    CHECK(v4.multicast_loopback().value() == false);
    REQUIRE_FALSE(v4.set_multicast_loopback(true).error());
    CHECK(v4.multicast_loopback().value() == true);
    CHECK(v4.set_multicast_hops(256).error() == errc::invalid_argument);
    CHECK(v4.join_group(address{address_v4::loopback()}).error() == errc::invalid_argument); // not multicast
    CHECK(v4.join_group(address{address_v6::parse("ff02::1").value()}).error() == errc::invalid_argument); // family

    udp_socket v6 = bound(ctx, true);
    REQUIRE_FALSE(v6.set_multicast_hops(7).error());
    CHECK(v6.multicast_hops().value() == 7);
    REQUIRE_FALSE(v6.set_multicast_loopback(false).error());
    CHECK(v6.multicast_loopback().value() == false);

    udp_socket closed(ctx);
    CHECK(closed.set_broadcast(true).error() == errc::bad_state);
    co_return;
}

PORTICO_IO_TEST_CASE("connected mode: send and recv to one peer", "[udp_socket]")
{
    udp_socket a = bound(ctx, false);
    udp_socket b = bound(ctx, false);
    REQUIRE_FALSE(a.connect(where(b)).error());
    CHECK(a.remote_endpoint().value() == where(b));
    std::array<char, 8> got{};
    endpoint sender;
    auto [r, w] = co_await portico::when_all(b.recv_from(buffer(got), sender), a.send(buffer("hi", 2)));
    CHECK_FALSE(w.error());
    REQUIRE_FALSE(r.error());
    CHECK(r.value() == 2);
    REQUIRE_FALSE(b.connect(where(a)).error());
    auto [r2, w2] = co_await portico::when_all(a.recv(buffer(got)), b.send(buffer("back", 4)));
    CHECK_FALSE(w2.error());
    REQUIRE_FALSE(r2.error());
    CHECK(r2.value() == 4);
    CHECK(std::memcmp(got.data(), "back", 4) == 0);
}

PORTICO_IO_TEST_CASE("close aborts a pending receive", "[udp_socket]")
{
    udp_socket s = bound(ctx, false);
    std::array<char, 8> got{};
    endpoint from;
    auto closer = [&]() -> task<> {
        co_await ctx.sleep_for(20ms);
        s.close();
    };
    auto [r, unused] = co_await portico::when_all(s.recv_from(buffer(got), from), closer());
    CHECK(r.error() == errc::operation_aborted);
}

PORTICO_IO_TEST_CASE("multicast: a group joined on loopback receives what is sent to it", "[udp_socket]")
{
    for (bool ipv6 : {false, true}) {
        INFO((ipv6 ? "IPv6 ff02::1:7 on ::1's interface" : "IPv4 239.255.77.77 on 127.0.0.1"));
        if (!portico::test::multicast_loopback_available(ipv6)) {
            // The host itself does not deliver it (plain Winsock said so):
            // nothing portico could do would pass.
            WARN("skipped: this host does not deliver " << (ipv6 ? "IPv6" : "IPv4") << " multicast over loopback");
            continue;
        }
        const address group = ipv6 ? address{address_v6::parse("ff02::1:7").value()}
                                   : address{address_v4::parse("239.255.77.77").value()};
        udp_socket receiver(ctx);
        REQUIRE_FALSE(
            receiver.bind(endpoint{ipv6 ? address{address_v6::any()} : address{address_v4::any()}, 0}, true).error());
        const auto port = where(receiver).port();
        udp_socket sender(ctx);
        REQUIRE_FALSE(sender.open(ipv6).error());
        REQUIRE_FALSE(sender.set_multicast_loopback(true).error());
        std::error_code setup;
        if (ipv6) {
            // Interface 1 is the loopback interface on Windows and Linux alike.
            setup = receiver.join_group(group, 1).error();
            if (!setup) setup = sender.set_multicast_interface(1u).error();
        } else {
            setup = receiver.join_group(group.to_v4(), address_v4::loopback()).error();
            if (!setup) setup = sender.set_multicast_interface(address_v4::loopback()).error();
        }
        REQUIRE_FALSE(setup);
        std::array<char, 16> got{};
        endpoint from;
        auto [r, w] = co_await portico::when_all(portico::with_timeout(ctx, 2s, receiver.recv_from(buffer(got), from)),
                                                 sender.send_to(buffer("group!", 6), endpoint{group, port}));
        REQUIRE_FALSE(w.error());
        REQUIRE_FALSE(r.error());
        CHECK(r.value_unchecked() == 6);
        CHECK(std::memcmp(got.data(), "group!", 6) == 0);
        // Left the way it was joined.
        const auto left =
            ipv6 ? receiver.leave_group(group, 1) : receiver.leave_group(group.to_v4(), address_v4::loopback());
        CHECK_FALSE(left.error());
        if (!ipv6) CHECK(receiver.leave_group(group.to_v4(), address_v4::loopback()).error()); // not a member now
    }
}
