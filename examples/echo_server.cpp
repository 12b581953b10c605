// portico example: the TCP echo server, the first program of every socket
// course, written with coroutines on an I/O completion port.
//
// One session coroutine per client sends back whatever it receives. A few
// pool threads serve every connection; nothing blocks. Ctrl+C stops the
// io_context: the acceptor closes, every session's pending receive is
// cancelled, each session closes its socket and the program exits.
//
// A client must send its first bytes within the join deadline and may then
// be silent for at most the idle deadline; otherwise the server closes the
// connection. Without them, a host that opens connections and never speaks
// holds a socket and a session each for as long as it likes.
//
//   echo_server [--host ADDRESS] [--port N] [--threads N] [--sessions N]
//               [--join-timeout SECONDS] [--idle-timeout SECONDS]
//
//   --host          address to listen on (default 0.0.0.0: every interface)
//   --port          port to listen on (default 25000; 0 lets the system choose)
//   --threads       pool threads (default 2)
//   --sessions      exit after serving this many clients (default 0: never)
//   --join-timeout  the first bytes must arrive within this (default 10)
//   --idle-timeout  later, the longest a client may send nothing (default 300)
//
// The first line printed is "listening on HOST:PORT". The lines about
// connections are at most 50 per 10 s (log_limiter.hpp): a flood of
// connections must not flood the log.

#include <portico/portico.hpp>

#include "example_support.hpp"
#include "log_limiter.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

namespace {

using portico::buffer;
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
std::string describe(std::error_code reason, bool heard, const server_state& state)
{
    if (reason == portico::errc::eof) return "client closed";
    if (reason == portico::errc::timed_out) {
        return heard ? "silent for " + std::to_string(state.idle_timeout.count()) + " s"
                     : "sent nothing within " + std::to_string(state.join_timeout.count()) + " s";
    }
    return reason.message();
}

// snippet-begin: server
// Receive, send the same bytes back, until the client closes or fails, or
// sends nothing in time: the first bytes within the join deadline, then
// never a silence longer than the idle deadline.
task<> session(tcp_socket s, endpoint peer, server_state& state)
{
    std::array<char, 4096> data;
    unsigned long long bytes = 0;
    std::error_code reason;
    for (;;) {
        const auto limit = bytes == 0 ? state.join_timeout : state.idle_timeout;
        // At the deadline the receive is cancelled and yields timed_out.
        auto [ec, n] = co_await portico::with_timeout(s.context(), limit, s.read_some(buffer(data)));
        if (ec) {
            reason = ec;
            break;
        }
        // write_all loops until the kernel took every byte: a send may be short.
        auto [write_ec, written] = co_await s.write_all(buffer(data.data(), n));
        bytes += written;
        if (write_ec) {
            reason = write_ec;
            break;
        }
    }
    s.close();
    if (reason == portico::errc::timed_out) ++state.dropped;
    // One line per session, within the log's budget.
    if (state.log.allow()) {
        std::printf("%s: closed after %llu bytes (%s)\n", peer.to_string().c_str(), bytes,
                    describe(reason, bytes != 0, state).c_str());
    }
    if (state.finished.fetch_add(1) + 1 == state.session_limit) state.acceptor.close();
}

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
    // On Ctrl+C, cancel what the sessions are waiting for; they close and end.
    if (ctx.get_stop_token().stop_requested()) sessions.request_stop();
    co_await sessions.join();
}
// snippet-end: server

// snippet-begin: signals
// Ctrl+C, Ctrl+Break or closing the console window stops the context. The
// wait resumes on a pool thread; if the server stops for another reason
// (the session limit), stop() ends the wait with operation_aborted instead.
task<> stop_on_signal(io_context& ctx, portico::signal_set& signals)
{
    auto [ec, event] = co_await signals.wait();
    if (!ec) ctx.stop();
}
// snippet-end: signals

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
        std::fprintf(stderr, "echo_server: --host wants a numeric IPv4 or IPv6 address\n");
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(example::option(argc, argv, "--port", "25000")));
    const auto threads = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--threads", "2")));
    const auto limit = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--sessions", "0")));
    const std::chrono::seconds join_timeout(std::atoi(example::option(argc, argv, "--join-timeout", "10")));
    const std::chrono::seconds idle_timeout(std::atoi(example::option(argc, argv, "--idle-timeout", "300")));
    if (join_timeout.count() < 1 || idle_timeout.count() < 1) {
        std::fprintf(stderr, "echo_server: --join-timeout and --idle-timeout want at least 1 second\n");
        return 2;
    }

    io_context ctx;
    tcp_acceptor acceptor(ctx);
    if (auto [ec] = acceptor.listen(endpoint{host.value_unchecked(), port}); ec) {
        // address_in_use: another program (or another copy of this one) has the port.
        std::fprintf(stderr, "echo_server: cannot listen on port %u: %s\n", port, ec.message().c_str());
        return 1;
    }
    std::printf("listening on %s\n", acceptor.local_endpoint().value().to_string().c_str());

    // snippet-begin: main-signals
    using portico::signal_event;
    portico::signal_set signals(ctx, {signal_event::interrupt, signal_event::quit, signal_event::hangup});
    ctx.spawn(stop_on_signal(ctx, signals));
    // snippet-end: main-signals
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
