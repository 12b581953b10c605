// portico example: the chat server of the course notes, done with
// coroutines. Every client joins with a nickname; every line one client says
// goes to everyone in the room; joins and departures are announced.
//
// A message is encoded once (shared_packet) and queued on every session's
// stream (queue_packet): no copy, no coroutine and no allocation per client,
// and no client waits for another. A client that stops reading is
// disconnected once its queue passes 256 KiB instead of slowing the room
// down. A connection must join within --join-timeout seconds; nicknames and
// lines are limited (chat_protocol.hpp) and a refusal says why. Ctrl+C tells
// everyone the server is going down, waits (at most 2 s) until that notice
// went out, then closes every session. A heartbeat finds members who vanished
// without a word (a pulled cable): asked "are you alive?" after --heartbeat
// seconds of silence, dropped after --heartbeat-timeout without an answer.
//
//   chat_server [--port N] [--threads N] [--sessions N] [--join-timeout S]
//               [--heartbeat S] [--heartbeat-timeout S]
//
//   --port               port to listen on (default 25000; 0 lets the system choose)
//   --threads            pool threads (default 2)
//   --sessions           exit after this many clients have come and gone (default 0: never)
//   --join-timeout       seconds a new connection has to join (default 10)
//   --heartbeat          seconds of silence before a member is pinged (default 10; 0: no heartbeat)
//   --heartbeat-timeout  seconds without a sign of life before it is dropped (default 30)
//
// The first line printed is "listening on HOST:PORT".

#include <portico/portico.hpp>

#include "example_support.hpp"

#include "chat_protocol.hpp"
#include "chat_room.hpp"
#include "log_limiter.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace {

using namespace std::chrono_literals;
using portico::endpoint;
using portico::io_context;
using portico::packet_stream;
using portico::task;
using portico::tcp_acceptor;
using portico::tcp_socket;

struct server_state {
    tcp_acceptor& acceptor;
    chat::room& chat_room;
    unsigned session_limit;
    std::chrono::seconds join_timeout;
    portico::heartbeat_options heartbeat;
    std::atomic<unsigned> finished{0};
    std::atomic<unsigned> cut_off{0}; // for not reading
    std::atomic<unsigned> zombies{0}; // for not answering the heartbeat
    // The lines clients cause: a flood of connections must not flood the log.
    example::log_limiter log{50, std::chrono::seconds(10)};
};

// Why a join is refused, or nothing if the nickname is acceptable.
std::string_view check_nickname(std::string_view name)
{
    if (name.empty() || name.size() > chat::max_nickname) return "a nickname has 1 to 32 bytes";
    if (!chat::printable(name)) return "a nickname has no control characters";
    return {};
}

// snippet-begin: session
task<> session(tcp_socket s, endpoint peer, server_state& state)
{
    // A modest kernel send buffer: left to grow on its own (Linux lets it reach
    // 4 MiB) it would hide a client that stopped reading for megabytes before
    // the send queue's policy below ever saw it.
    (void)s.set_send_buffer_size(64 * 1024);
    io_context& ctx = s.context();
    auto m = std::make_shared<chat::member>(
        chat::member{packet_stream<tcp_socket>(std::move(s), chat::member_options(state.heartbeat)), {}});
    chat::room& r = state.chat_room;
    // The first packet must name the client, and soon: a connection that
    // never joins would otherwise hold its socket for as long as it likes.
    auto [ec, hello] = co_await portico::with_timeout(ctx, state.join_timeout, m->stream.read_packet());
    if (!ec && hello.type != chat::join) ec = make_error_code(portico::errc::invalid_argument);
    if (!ec) {
        if (const std::string_view why = check_nickname(chat::text(hello)); !why.empty()) {
            // Told why, then closed: the write waits until the reason is out.
            auto [refused_ec] = co_await m->stream.write_packet(chat::refused, why);
            (void)refused_ec;
            if (state.log.allow())
                std::printf("%s: join refused (%.*s)\n", peer.to_string().c_str(), static_cast<int>(why.size()),
                            why.data());
            ec = make_error_code(portico::errc::invalid_argument);
        }
    }
    if (!ec) {
        m->nickname = chat::text(hello);
        const std::size_t others = r.enter(m); // and the others hear "joined"
        auto [welcome_ec] = co_await m->stream.write_packet(chat::welcome, std::to_string(others));
        if (state.log.allow()) std::printf("%s joined from %s\n", m->nickname.c_str(), peer.to_string().c_str());
        for (ec = welcome_ec; !ec;) {
            auto [read_ec, pkt] = co_await m->stream.read_packet();
            ec = read_ec;
            if (ec || pkt.type != chat::say) continue;
            const std::string_view line = chat::text(pkt);
            if (line.size() > chat::max_line) {
                ec = m->stream.queue_packet(chat::refused, std::string_view("a line has at most 1000 bytes"));
            } else if (!chat::printable(line)) {
                ec = m->stream.queue_packet(chat::refused, std::string_view("a line has no control characters"));
            } else {
                r.broadcast(chat::message, m->nickname + ": " + std::string(line));
            }
        }
        r.leave(*m); // and the others hear "left"
    }
    // The nickname was checked before it was stored: it prints as it is.
    if (state.log.allow())
        std::printf("%s left (%s)\n", m->nickname.empty() ? peer.to_string().c_str() : m->nickname.c_str(),
                    ec == portico::errc::eof ? "closed" : ec.message().c_str());
    if (ec == portico::errc::send_queue_full) ++state.cut_off;
    if (ec == portico::errc::heartbeat_timeout) ++state.zombies;
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
    if (ctx.get_stop_token().stop_requested()) {
        // Ctrl+C: say goodbye, wait until every goodbye was handed to the
        // kernel (at most 2 s: a member that stopped reading must not hold
        // the shutdown; timers keep running after stop()), then end the
        // sessions (each read_packet is cancelled).
        auto [late] = co_await portico::with_timeout(
            ctx, 2s, state.chat_room.broadcast_and_wait(chat::shutdown, "server shutting down"));
        if (late) std::printf("some goodbyes were not sent within 2 s\n");
        sessions.request_stop();
    }
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
    const auto port = static_cast<unsigned short>(std::atoi(example::option(argc, argv, "--port", "25000")));
    const auto threads = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--threads", "2")));
    const auto limit = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--sessions", "0")));
    const int join_timeout = std::atoi(example::option(argc, argv, "--join-timeout", "10"));
    const int heartbeat = std::atoi(example::option(argc, argv, "--heartbeat", "10"));
    const int heartbeat_timeout = std::atoi(example::option(argc, argv, "--heartbeat-timeout", "30"));
    if (heartbeat > 0 && heartbeat_timeout <= heartbeat) {
        std::fprintf(stderr, "chat_server: --heartbeat-timeout must be longer than --heartbeat\n");
        return 1;
    }

    io_context ctx;
    tcp_acceptor acceptor(ctx);
    if (auto [ec] = acceptor.listen(endpoint{portico::address_v4::any(), port}); ec) {
        std::fprintf(stderr, "chat_server: cannot listen on port %u: %s\n", port, ec.message().c_str());
        return 1;
    }
    std::printf("listening on %s\n", acceptor.local_endpoint().value().to_string().c_str());

    using portico::signal_event;
    portico::signal_set signals(ctx, {signal_event::interrupt, signal_event::quit, signal_event::hangup});
    ctx.spawn(stop_on_signal(ctx, signals));
    chat::room chat_room;
    server_state state{acceptor, chat_room, limit, std::chrono::seconds(join_timeout),
                       heartbeat > 0
                           ? chat::heartbeat(std::chrono::seconds(heartbeat), std::chrono::seconds(heartbeat_timeout))
                           : portico::heartbeat_options{}};
    {
        portico::thread_pool pool(ctx, threads == 0 ? 1 : threads);
        portico::sync_wait(serve(ctx, state));
        ctx.stop();
    }
    state.log.flush();
    std::printf("served %u sessions\n", state.finished.load());
    if (state.cut_off != 0) std::printf("%u of them cut off for not reading\n", state.cut_off.load());
    if (state.zombies != 0) std::printf("%u of them dropped for not answering the heartbeat\n", state.zombies.load());
    return 0;
}
