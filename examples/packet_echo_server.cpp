// portico example: the packet echo server. Where echo_server moves bytes,
// this one moves packets: every message starts with its size and its type
// (the game-server header from the course notes), and the server sends each
// packet back with the same type.
//
// TCP does not keep message boundaries: three 100-byte sends may arrive as
// one 300-byte receive, or as 7 + 293 bytes. packet_stream reassembles the
// packets (one receive call can bring in many), checks each header before
// reading its body, and gathers header and body into one send.
//
//   packet_echo_server [--host ADDRESS] [--port N] [--threads N] [--sessions N]
//
//   --host      address to listen on (default 0.0.0.0: every interface)
//   --port      port to listen on (default 25000; 0 lets the system choose)
//   --threads   pool threads (default 2)
//   --sessions  exit after serving this many clients (default 0: never)
//
// The first line printed is "listening on HOST:PORT". Ctrl+C closes every
// session and exits.

#include <portico/portico.hpp>

#include "example_support.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace {

using namespace std::chrono_literals;
using portico::endpoint;
using portico::io_context;
using portico::task;
using portico::tcp_acceptor;
using portico::tcp_socket;

struct server_state {
    tcp_acceptor& acceptor;
    unsigned session_limit;
    std::atomic<unsigned> finished{0};
};

// snippet-begin: session
task<> session(tcp_socket s, endpoint peer, server_state& state)
{
    // The default format: u16 size (header included), u16 type, little-endian,
    // packets up to 64 KiB. A hostile header (size 0, size 65535 from a
    // client that then stalls...) closes this session only, with its reason.
    portico::packet_stream ps{std::move(s), portico::packet_stream_options{
                                                .packet_timeout = 10s, // a packet must arrive whole within 10 s
                                                .idle_timeout = 5min,  // a silent client is dropped
                                            }};
    unsigned long long packets = 0;
    std::error_code reason;
    for (;;) {
        // pkt.body is a view into the receive buffer, valid until the next read.
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec) {
            reason = ec;
            break;
        }
        // Same type, same body: header and body leave in one gather send, no copy.
        if (auto [write_ec] = co_await ps.write_packet(pkt.type, pkt.body); write_ec) {
            reason = write_ec;
            break;
        }
        ++packets;
    }
    std::printf("%s: closed after %llu packets (%s)\n", peer.to_string().c_str(), packets,
                reason == portico::errc::eof ? "client closed" : reason.message().c_str());
    if (state.finished.fetch_add(1) + 1 == state.session_limit) state.acceptor.close();
}
// snippet-end: session

task<> serve(io_context& ctx, server_state& state)
{
    co_await ctx.schedule();
    portico::task_group sessions;
    for (;;) {
        endpoint peer;
        auto [ec, s] = co_await state.acceptor.accept(peer);
        if (ec) break; // closed: Ctrl+C or the session limit
        std::printf("%s: connected\n", peer.to_string().c_str());
        sessions.spawn(session(std::move(s), peer, state));
    }
    // On Ctrl+C, stop what the sessions wait for: each read_packet ends with
    // operation_aborted and the session closes.
    if (ctx.get_stop_token().stop_requested()) sessions.request_stop();
    co_await sessions.join();
}

// Ctrl+C, Ctrl+Break or closing the console window stops the context (the
// wait resumes on a pool thread). If the server stops for another reason
// (the session limit), stop() ends the wait with operation_aborted instead.
task<> stop_on_signal(io_context& ctx, portico::signal_set& signals)
{
    auto [ec, event] = co_await signals.wait();
    if (!ec) ctx.stop();
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
    const auto host = portico::address::parse(example::option(argc, argv, "--host", "0.0.0.0"));
    if (host.error()) {
        std::fprintf(stderr, "packet_echo_server: --host wants a numeric IPv4 or IPv6 address\n");
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(example::option(argc, argv, "--port", "25000")));
    const auto threads = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--threads", "2")));
    const auto limit = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--sessions", "0")));

    io_context ctx;
    tcp_acceptor acceptor(ctx);
    if (auto [ec] = acceptor.listen(endpoint{host.value_unchecked(), port}); ec) {
        std::fprintf(stderr, "packet_echo_server: cannot listen on port %u: %s\n", port, ec.message().c_str());
        return 1;
    }
    std::printf("listening on %s\n", acceptor.local_endpoint().value().to_string().c_str());

    using portico::signal_event;
    portico::signal_set signals(ctx, {signal_event::interrupt, signal_event::quit, signal_event::hangup});
    ctx.spawn(stop_on_signal(ctx, signals));
    server_state state{acceptor, limit};
    {
        portico::thread_pool pool(ctx, threads == 0 ? 1 : threads);
        portico::sync_wait(serve(ctx, state));
        ctx.stop();
    }
    std::printf("served %u sessions\n", state.finished.load());
    return 0;
}
