// portico example: the chat server of the course notes, done with
// coroutines. Every client joins with a nickname; every line one client says
// goes to everyone in the room; joins and departures are announced.
//
// A message is encoded once (shared_packet) and handed to every session's
// send queue: no copy per client, and no client waits for another. A client
// that stops reading is disconnected once its queue passes 256 KiB instead
// of slowing the room down. Ctrl+C tells everyone the server is going down,
// waits until that notice went out, then closes every session.
//
//   chat_server [--port N] [--threads N] [--sessions N]
//
//   --port      port to listen on (default 25000; 0 lets the system choose)
//   --threads   pool threads (default 2)
//   --sessions  exit after this many clients have come and gone (default 0: never)
//
// The first line printed is "listening on HOST:PORT".

#include <portico/portico.hpp>

#include "example_support.hpp"

#include "chat_protocol.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::chrono_literals;
using portico::endpoint;
using portico::io_context;
using portico::packet_stream;
using portico::shared_packet;
using portico::task;
using portico::tcp_acceptor;
using portico::tcp_socket;

struct member {
    packet_stream<tcp_socket> stream;
    std::string nickname;
};

// snippet-begin: room
class room {
public:
    explicit room(portico::task_group& deliveries) : deliveries_(deliveries) {}

    // Adds a member and announces it to the others. Who is counted in the
    // newcomer's welcome and who is told it joined are read under one lock,
    // so any two members learn of each other exactly once: the earlier from
    // its welcome, the later from a notice. Returns the number of others.
    std::size_t enter(const std::shared_ptr<member>& m)
    {
        std::vector<std::shared_ptr<member>> others;
        {
            std::lock_guard lock(mutex_);
            others = members_;
            members_.push_back(m);
        }
        send(deliveries_, others, chat::joined, m->nickname);
        return others.size();
    }

    // Removes a member and tells those still there, again as one step.
    void leave(const member& m)
    {
        std::vector<std::shared_ptr<member>> others;
        {
            std::lock_guard lock(mutex_);
            std::erase_if(members_, [&m](const auto& other) { return other.get() == &m; });
            others = members_;
        }
        send(deliveries_, others, chat::left, m.nickname);
    }

    // Encodes the packet once and queues the same bytes on every member's
    // stream. Each delivery runs on its own: a slow member's queue fills
    // (and, past its watermark, closes that member) while the others carry on.
    void broadcast(chat::type type, std::string_view body) { send(deliveries_, everyone(), type, body); }

    // As broadcast(), but waits until every copy was handed to the kernel.
    task<> broadcast_and_wait(chat::type type, std::string_view body)
    {
        portico::task_group sent;
        send(sent, everyone(), type, body);
        co_await sent.join();
    }

private:
    // One packet to each of `to`, each delivery a task spawned in `into`.
    static void send(portico::task_group& into, const std::vector<std::shared_ptr<member>>& to, chat::type type,
                     std::string_view body)
    {
        auto [ec, packet] = shared_packet::make(portico::packet_format{}, type, body);
        if (ec) return; // longer than a packet can be: not sent
        // NOTE: deliveries start outside the lock (`to` is a copy of the
        // list): one may complete at once and resume a writer that
        // broadcasts in turn.
        for (const auto& m : to) into.spawn(deliver(m, packet));
    }

    // The member is kept alive (shared_ptr) until its write is done.
    static task<> deliver(std::shared_ptr<member> m, shared_packet packet)
    {
        auto [ec] = co_await m->stream.write_packet(std::move(packet));
        (void)ec; // a failed member's own session notices and leaves
    }

    std::vector<std::shared_ptr<member>> everyone()
    {
        std::lock_guard lock(mutex_);
        return members_;
    }

    portico::task_group& deliveries_;
    std::mutex mutex_;
    std::vector<std::shared_ptr<member>> members_;
};
// snippet-end: room

struct server_state {
    tcp_acceptor& acceptor;
    room& chat_room;
    unsigned session_limit;
    std::atomic<unsigned> finished{0};
};

// snippet-begin: session
task<> session(tcp_socket s, endpoint peer, server_state& state)
{
    // A modest kernel send buffer: left to grow on its own (Linux lets it reach
    // 4 MiB) it would hide a client that stopped reading for megabytes before
    // the send queue's policy below ever saw it.
    (void)s.set_send_buffer_size(64 * 1024);
    auto m = std::make_shared<member>(
        member{packet_stream<tcp_socket>(std::move(s),
                                         portico::packet_stream_options{
                                             // A client that stops reading is cut off, not waited for.
                                             .send = {.high_watermark = 256 * 1024,
                                                      .low_watermark = 64 * 1024,
                                                      .policy = portico::overflow_policy::disconnect},
                                             .packet_timeout = 10s,
                                         }),
               {}});
    room& r = state.chat_room;
    // The first packet must name the client.
    auto [ec, hello] = co_await m->stream.read_packet();
    if (!ec && (hello.type != chat::join || hello.body.empty())) ec = make_error_code(portico::errc::invalid_argument);
    if (!ec) {
        m->nickname = chat::text(hello);
        const std::size_t others = r.enter(m); // and the others hear "joined"
        auto [welcome_ec] = co_await m->stream.write_packet(chat::welcome, std::to_string(others));
        std::printf("%s joined from %s\n", m->nickname.c_str(), peer.to_string().c_str());
        for (ec = welcome_ec; !ec;) {
            auto [read_ec, pkt] = co_await m->stream.read_packet();
            ec = read_ec;
            if (!ec && pkt.type == chat::say) {
                r.broadcast(chat::message, m->nickname + ": " + std::string(chat::text(pkt)));
            }
        }
        r.leave(*m); // and the others hear "left"
    }
    std::printf("%s left (%s)\n", m->nickname.empty() ? peer.to_string().c_str() : m->nickname.c_str(),
                ec == portico::errc::eof ? "closed" : ec.message().c_str());
    if (state.finished.fetch_add(1) + 1 == state.session_limit) state.acceptor.close();
}
// snippet-end: session

task<> serve(io_context& ctx, server_state& state, portico::task_group& deliveries)
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
    // Every session has ended: nothing can broadcast any more.
    co_await deliveries.join();
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
    portico::task_group deliveries;
    room chat_room(deliveries);
    server_state state{acceptor, chat_room, limit};
    {
        portico::thread_pool pool(ctx, threads == 0 ? 1 : threads);
        portico::sync_wait(serve(ctx, state, deliveries));
        ctx.stop();
    }
    std::printf("served %u sessions\n", state.finished.load());
    return 0;
}
