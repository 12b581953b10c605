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
// A client must send its first packet within the join deadline, may then be
// silent for at most the idle deadline, and every packet must arrive whole
// within 10 s; otherwise the server closes the connection.
//
//   packet_echo_server [--host ADDRESS] [--port N] [--threads N] [--sessions N]
//                      [--join-timeout SECONDS] [--idle-timeout SECONDS]
//
//   --host          address to listen on (default 0.0.0.0: every interface)
//   --port          port to listen on (default 25000; 0 lets the system choose)
//   --threads       pool threads (default 2)
//   --sessions      exit after serving this many clients (default 0: never)
//   --join-timeout  the first packet must arrive within this (default 10)
//   --idle-timeout  later, the longest a client may send nothing (default 300)
//
// The first line printed is "listening on HOST:PORT"; the lines about
// connections are at most 50 per 10 s (log_limiter.hpp). Ctrl+C closes
// every session and exits.

#include <portico/portico.hpp>

#include "example_support.hpp"
#include "log_limiter.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>

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
    std::chrono::seconds join_timeout;
    std::chrono::seconds idle_timeout;
    std::atomic<unsigned> finished{0};
    std::atomic<unsigned> dropped{0}; // closed by a deadline
    example::log_limiter log{50, std::chrono::seconds(10)};
};

// Why a session ended, for its last line.
std::string describe(std::error_code reason, unsigned long long packets, const server_state& state)
{
    if (reason == portico::errc::eof) return "client closed";
    if (reason == portico::errc::timed_out) {
        return packets == 0 ? "sent no packet within " + std::to_string(state.join_timeout.count()) + " s"
                            : "a packet took longer than 10 s";
    }
    if (reason == portico::errc::idle_timeout) {
        return "silent for " + std::to_string(state.idle_timeout.count()) + " s";
    }
    return reason.message();
}

// snippet-begin: session
task<> session(tcp_socket s, endpoint peer, server_state& state)
{
    // The default format: u16 size (header included), u16 type, little-endian,
    // packets up to 64 KiB. A hostile header (size 0, size 65535 from a
    // client that then stalls...) closes this session only, with its reason.
    portico::packet_stream ps{std::move(s), portico::packet_stream_options{
                                                .packet_timeout = 10s, // a packet must arrive whole within 10 s
                                                .idle_timeout = state.idle_timeout, // a silent client is dropped
                                            }};
    io_context& ctx = ps.next_layer().context();
    unsigned long long packets = 0;
    std::error_code reason;
    for (;;) {
        // The first packet must arrive within the join deadline: a
        // connection that never speaks is closed with timed_out.
        auto read = packets == 0 ? portico::with_timeout(ctx, state.join_timeout, ps.read_packet()) : ps.read_packet();
        // pkt.body is a view into the receive buffer, valid until the next read.
        auto [ec, pkt] = co_await std::move(read);
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
    if (reason == portico::errc::timed_out || reason == portico::errc::idle_timeout) ++state.dropped;
    // One line per session, within the log's budget.
    if (state.log.allow()) {
        std::printf("%s: closed after %llu packets (%s)\n", peer.to_string().c_str(), packets,
                    describe(reason, packets, state).c_str());
    }
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
        if (state.log.allow()) std::printf("%s: connected\n", peer.to_string().c_str());
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
    const std::chrono::seconds join_timeout(std::atoi(example::option(argc, argv, "--join-timeout", "10")));
    const std::chrono::seconds idle_timeout(std::atoi(example::option(argc, argv, "--idle-timeout", "300")));
    if (join_timeout.count() < 1 || idle_timeout.count() < 1) {
        std::fprintf(stderr, "packet_echo_server: --join-timeout and --idle-timeout want at least 1 second\n");
        return 2;
    }

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
    server_state state{acceptor, limit, join_timeout, idle_timeout};
    {
        portico::thread_pool pool(ctx, threads == 0 ? 1 : threads);
        portico::sync_wait(serve(ctx, state));
        ctx.stop();
    }
    state.log.flush();
    if (state.dropped != 0) std::printf("%u connections closed by a deadline\n", state.dropped.load());
    std::printf("served %u sessions\n", state.finished.load());
    return 0;
}
