// portico example: the packet echo client. Sends typed packets to
// packet_echo_server and checks that each comes back with its type and body.
//
//   packet_echo_client [--host ADDRESS] [--port N]                  lines from stdin
//   packet_echo_client [--host ADDRESS] [--port N] --count N [--size BYTES] [--clients N]
//
//   --host     server address (default 127.0.0.1)
//   --port     server port (default 25000)
//   --count    random packets per connection, instead of reading stdin
//   --size     largest body in bytes (default 1000; bodies are 0..size)
//   --clients  connections at once (default 1)
//
// With stdin, each line is one chat packet (type 1) until "EXIT" or the end
// of input. With --count, every connection sends packets of random types
// and sizes while it reads the echoes back, so many packets are in flight.
// Prints the echoes or a summary; exits non-zero if anything failed.

#include <portico/portico.hpp>

#include "example_support.hpp"
#include "untrusted_text.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using portico::endpoint;
using portico::io_context;
using portico::packet_stream;
using portico::task;
using portico::tcp_socket;

// Packet types a game protocol would define; the echo server does not care.
enum packet_type : std::uint16_t { chat = 1 };

struct totals {
    std::atomic<unsigned long long> packets{0};
    std::atomic<unsigned long long> bytes{0};
    std::atomic<unsigned> failures{0};
};

void fail(totals& t, const char* what, const std::error_code& ec)
{
    std::printf("packet_echo_client: %s: %s\n", what, ec.message().c_str());
    ++t.failures;
}

// snippet-begin: chat
// One chat line: one packet out, one packet back. No length bookkeeping:
// the header carries it, and read_packet returns a whole packet or an error.
task<> chat_line(packet_stream<tcp_socket>& ps, std::string line, totals& t)
{
    if (auto [ec] = co_await ps.write_packet(chat, line); ec) co_return fail(t, "send", ec);
    auto [ec, pkt] = co_await ps.read_packet();
    if (ec) co_return fail(t, "receive", ec);
    const std::string_view text(reinterpret_cast<const char*>(pkt.body.data()), pkt.body.size());
    // What a server sends is printed escaped: it must not drive the terminal.
    std::printf("from server [type %u]: %s\n", static_cast<unsigned>(pkt.type), example::escaped(text).c_str());
    if (pkt.type != chat || text != line) ++t.failures;
    ++t.packets;
}
// snippet-end: chat

task<tcp_socket> connect(io_context& ctx, endpoint server, totals& t)
{
    tcp_socket s(ctx);
    if (auto [ec] = co_await s.connect(server); ec) fail(t, "connect", ec);
    co_return s;
}

// Lines from stdin. Reading stdin blocks, so it happens on the main thread;
// each exchange runs on the pool.
void lines(io_context& ctx, endpoint server, totals& t)
{
    packet_stream<tcp_socket> ps(portico::sync_wait(connect(ctx, server, t)));
    std::string line;
    while (t.failures == 0 && std::getline(std::cin, line) && line != "EXIT") {
        portico::sync_wait(chat_line(ps, line, t));
    }
    if (ps.next_layer().is_open()) (void)ps.next_layer().shutdown_send();
}

// The packets a connection sends, reproducible from its seed so the reader
// can check the echoes without sharing state with the writer.
struct generator {
    std::mt19937 random;
    std::size_t max_size;

    std::uint16_t next(std::vector<unsigned char>& body)
    {
        const auto type = static_cast<std::uint16_t>(random());
        body.resize(random() % (max_size + 1));
        for (auto& b : body) b = static_cast<unsigned char>(random());
        return type;
    }
};

task<> random_packets(io_context& ctx, endpoint server, unsigned count, std::size_t size, unsigned seed, totals& t)
{
    auto s = co_await connect(ctx, server, t);
    if (!s.is_open()) co_return;
    packet_stream<tcp_socket> ps(std::move(s));
    auto writer = [&]() -> task<> {
        generator g{std::mt19937(seed), size};
        std::vector<unsigned char> body;
        for (unsigned i = 0; i < count; ++i) {
            const auto type = g.next(body);
            if (auto [ec] = co_await ps.write_packet(type, body); ec) co_return fail(t, "send", ec);
        }
    };
    auto reader = [&]() -> task<> {
        generator g{std::mt19937(seed), size};
        std::vector<unsigned char> expected;
        for (unsigned i = 0; i < count; ++i) {
            const auto type = g.next(expected);
            auto [ec, pkt] = co_await ps.read_packet();
            if (ec) co_return fail(t, "receive", ec);
            if (pkt.type != type || pkt.body.size() != expected.size() ||
                !std::equal(pkt.body.begin(), pkt.body.end(), reinterpret_cast<const std::byte*>(expected.data()))) {
                std::printf("packet_echo_client: packet %u came back different\n", i);
                ++t.failures;
                co_return;
            }
            ++t.packets;
            t.bytes += pkt.body.size();
        }
    };
    // Sending and receiving at once: many packets in flight, as in a game.
    co_await portico::when_all(writer(), reader());
    (void)ps.next_layer().shutdown_send();
    // The server's eof says it has seen everything.
    auto [ec, pkt] = co_await ps.read_packet();
    if (ec != portico::errc::eof) fail(t, "waiting for the server to close", ec);
}

task<> many(io_context& ctx, endpoint server, unsigned clients, unsigned count, std::size_t size, totals& t)
{
    co_await ctx.schedule();
    std::vector<task<>> all;
    for (unsigned i = 0; i < clients; ++i) all.push_back(random_packets(ctx, server, count, size, 1234 + i, t));
    co_await portico::when_all(std::move(all));
}

} // namespace

int main(int argc, char** argv)
{
    // Unbuffered, so whoever reads the output (a terminal, a test script)
    // sees each line when it is printed, even if the process is killed
    // later. The Windows C runtimes have no line buffering: _IOLBF means full
    // buffering there, and the UCRT rejects a size below 2 as an invalid
    // parameter (docs/platform-notes.md). A flush after each line would do
    // too, at every printf; these programs print little, so unbuffered it is.
    std::setvbuf(stdout, nullptr, _IONBF, 0);
    const auto host = portico::address::parse(example::option(argc, argv, "--host", "127.0.0.1"));
    if (host.error()) {
        std::fprintf(stderr, "packet_echo_client: --host wants a numeric IPv4 or IPv6 address\n");
        return 2;
    }
    const endpoint server{host.value_unchecked(),
                          static_cast<unsigned short>(std::atoi(example::option(argc, argv, "--port", "25000")))};
    const auto count = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--count", "0")));
    const auto size = static_cast<std::size_t>(std::atoll(example::option(argc, argv, "--size", "1000")));
    const auto clients = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--clients", "1")));
    // The largest body the default format carries: 64 KiB minus the header.
    if (size > 65535 - 4) {
        std::fprintf(stderr, "packet_echo_client: --size is at most 65531\n");
        return 2;
    }

    io_context ctx;
    totals t;
    {
        portico::thread_pool pool(ctx, 2);
        if (count == 0) {
            lines(ctx, server, t);
        } else {
            portico::sync_wait(many(ctx, server, clients == 0 ? 1 : clients, count, size, t));
        }
        ctx.stop();
    }
    if (count != 0) {
        std::printf("echoed %llu packets, %llu bytes of body, %s\n", t.packets.load(), t.bytes.load(),
                    t.failures == 0 ? "all intact" : "with failures");
    }
    return t.failures == 0 ? 0 : 1;
}
