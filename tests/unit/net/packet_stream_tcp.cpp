// packet_stream over a real tcp_socket (the mock-stream tests are in
// unit/framing/packet_stream.cpp).
#include <portico/framing/packet_stream.hpp>
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/loopback.hpp"

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

using portico::buffer;
using portico::errc;
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
