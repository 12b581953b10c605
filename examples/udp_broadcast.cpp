// portico example: discovery on a LAN with UDP broadcast, as in the course
// notes: one side announces itself to every host on the network's port
// 25000, the other listens on that port and prints who it heard.
//
//   udp_broadcast listen   [--port N] [--count N]
//   udp_broadcast announce [--port N] [--name TEXT] [--to ADDRESS] [--count N] [--interval-ms N]
//
//   --port         the discovery port (default 25000; 0 lets a listener's system choose)
//   --count        listen: stop after this many announcements (default 0: until Ctrl+C);
//                  announce: how many to send (default 3)
//   --name         what to announce (default "portico")
//   --to           where to send: an address or a host name (default
//                  255.255.255.255, every host on the local network;
//                  127.0.0.1 or localhost to try it on one machine)
//   --interval-ms  between announcements (default 500)
//
// A listener's first line is "listening on HOST:PORT". Broadcasts stop at
// the first router, and every host on the segment has to look at them: use
// them for discovery, not for traffic. Anyone on the network can send the
// listener a datagram: it prints names escaped, and at most 50 "heard"
// lines per 10 s.

#include <portico/portico.hpp>

#include "example_support.hpp"
#include "log_limiter.hpp"
#include "untrusted_text.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

namespace {

using portico::address;
using portico::address_v4;
using portico::buffer;
using portico::endpoint;
using portico::io_context;
using portico::task;
using portico::udp_socket;

// snippet-begin: listen
// Every announcement is one datagram; recv_from says who sent it. Its bytes
// are anyone's: printed escaped, and within the log's budget.
task<int> hear_announcements(udp_socket& s, unsigned count, example::log_limiter& log)
{
    std::array<char, 512> name;
    for (unsigned heard = 0; count == 0 || heard < count;) {
        endpoint from;
        auto [ec, n] = co_await s.recv_from(buffer(name), from);
        if (ec == portico::errc::datagram_truncated) continue; // not one of ours: too long
        if (ec) {
            std::printf("stopped: %s\n", ec.message().c_str());
            co_return ec == portico::errc::operation_aborted ? 0 : 1;
        }
        if (log.allow()) {
            const std::string shown = example::escaped({name.data(), n});
            std::printf("heard '%s' from %s\n", shown.c_str(), from.to_string().c_str());
        }
        ++heard;
    }
    co_return 0;
}

// The socket may send to a broadcast address only once SO_BROADCAST is on.
task<int> announce(io_context& ctx, udp_socket& s, std::string name, endpoint to, unsigned count,
                   std::chrono::milliseconds interval)
{
    if (auto [ec] = s.set_broadcast(true); ec) co_return 1;
    for (unsigned i = 0; i < count; ++i) {
        if (i != 0) co_await ctx.sleep_for(interval);
        if (auto [ec, n] = co_await s.send_to(buffer(name), to); ec) {
            std::printf("announce: %s\n", ec.message().c_str());
            co_return 1;
        }
    }
    std::printf("announced '%s' to %s %u times\n", name.c_str(), to.to_string().c_str(), count);
    co_return 0;
}
// snippet-end: listen

// snippet-begin: resolve
// "--to" may be a host name: resolved without blocking a pool thread (a
// literal address never touches DNS). Broadcast is IPv4 only.
task<portico::io_result<endpoint>> destination(io_context& ctx, std::string host, unsigned short port)
{
    auto [ec, found] = co_await portico::resolver(ctx).resolve(host, std::to_string(port), portico::resolve_family::v4);
    if (ec) co_return portico::io_result<endpoint>{ec, {}};
    co_return portico::io_result<endpoint>{{}, found.front()};
}
// snippet-end: resolve

// Ctrl+C, Ctrl+Break or closing the console window: the pending receive
// (or sleep) is cancelled through its stop token. If the program ends for
// another reason, the context's stop() ends the wait instead.
task<> cancel_on_signal(portico::signal_set& signals, portico::stop_source& interrupted)
{
    auto [ec, event] = co_await signals.wait();
    if (!ec) interrupted.request_stop();
}

bool has_word(int argc, char** argv, std::string_view word)
{
    for (int i = 1; i < argc; ++i) {
        if (argv[i] == word && (i == 1 || std::string_view(argv[i - 1]).substr(0, 2) != "--")) return true;
    }
    return false;
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
    const bool listener = has_word(argc, argv, "listen");
    if (!listener && !has_word(argc, argv, "announce")) {
        std::fprintf(stderr, "usage: udp_broadcast listen|announce [options] (see the source)\n");
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(example::option(argc, argv, "--port", "25000")));
    io_context ctx;
    udp_socket s(ctx);
    const auto count = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--count", listener ? "0" : "3")));
    // What the listener prints for others' datagrams: at most 50 lines per 10 s.
    example::log_limiter log(50, std::chrono::seconds(10));
    endpoint to;
    if (listener) {
        // Several listeners on one machine may share the port.
        if (auto [ec] = s.bind(endpoint{address_v4::any(), port}, true); ec) {
            std::fprintf(stderr, "udp_broadcast: cannot bind port %u: %s\n", port, ec.message().c_str());
            return 1;
        }
        std::printf("listening on %s\n", s.local_endpoint().value().to_string().c_str());
    } else if (auto [ec] = s.open(false); ec) {
        return 1;
    }
    const std::chrono::milliseconds interval(std::atoi(example::option(argc, argv, "--interval-ms", "500")));

    int status = 0;
    using portico::signal_event;
    portico::signal_set signals(ctx, {signal_event::interrupt, signal_event::quit, signal_event::hangup});
    portico::stop_source interrupted;
    ctx.spawn(cancel_on_signal(signals, interrupted));
    {
        portico::thread_pool pool(ctx, 1);
        if (!listener) {
            const char* host = example::option(argc, argv, "--to", "255.255.255.255");
            auto [ec, where] = portico::sync_wait(destination(ctx, host, port));
            if (ec) {
                std::fprintf(stderr, "udp_broadcast: --to %s: %s\n", host, ec.message().c_str());
                ctx.stop();
                return 2;
            }
            to = where;
        }
        auto run = listener ? [](io_context& c, udp_socket& sock, unsigned n, example::log_limiter& l) -> task<int> {
            co_await c.schedule();
            co_return co_await hear_announcements(sock, n, l);
        }(ctx, s, count, log)
            : announce(ctx, s, example::option(argc, argv, "--name", "portico"), to, count, interval);
        run.set_stop_token(interrupted.get_token());
        status = portico::sync_wait(std::move(run));
        ctx.stop();
    }
    log.flush();
    return status;
}
