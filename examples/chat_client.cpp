// portico example: the chat client. Joins chat_server with a nickname and
// shows what the room says; or, with --users, plays several users at once
// and checks that everyone heard everything.
//
//   chat_client [--host ADDRESS] [--port N] [--name NICKNAME]          lines from stdin
//   chat_client [--host ADDRESS] [--port N] --users N [--messages M] [--size B] [--stalled K]
//
//   --host      server address or name (default 127.0.0.1)
//   --port      server port (default 25000)
//   --name      nickname (default "guest")
//   --users     users to play at once, instead of reading stdin
//   --messages  lines each user says (default 10)
//   --size      pad each line to this many bytes (default: no padding)
//   --stalled   users who join and then never read (default 0)
//
// With stdin, each line is said to the room until "EXIT" or the end of
// input. With --users, every user joins, waits until all are in the room,
// says its lines one by one, and reads until it has heard every user's every
// line; the summary says how many were sent and delivered. Stalled users
// test the server's slow-client policy: each must have been cut off by the
// server before it heard everything. Exits non-zero on failure.
//
// Every connection runs the chat's heartbeat (chat_protocol.hpp): it answers
// the server's pings, so a user who only listens is not taken for a zombie,
// and it finds a server that vanished without a word.

#include <portico/portico.hpp>

#include "example_support.hpp"

#include "chat_protocol.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::chrono_literals;
using portico::io_context;
using portico::packet_stream;
using portico::task;
using portico::tcp_socket;

struct totals {
    std::atomic<unsigned long long> sent{0};
    std::atomic<unsigned long long> delivered{0};
    std::atomic<unsigned> failures{0};
    std::atomic<unsigned> cut_off{0};
};

// What the scripted users do.
struct script {
    unsigned users = 0;        // users who talk and listen
    unsigned messages = 10;    // lines each of them says
    std::size_t line_size = 0; // lines padded to this many bytes
    unsigned stalled = 0;      // users who join and then never read
};

void fail(totals& t, const std::string& who, const std::string& what, const std::error_code& ec)
{
    std::printf("chat_client: %s: %s: %s\n", who.c_str(), what.c_str(), ec.message().c_str());
    ++t.failures;
}

// Connects (the host may be a name) and joins; yields the stream, or nothing.
task<std::optional<packet_stream<tcp_socket>>> join(io_context& ctx, std::string host, std::string port,
                                                    std::string name, totals& t,
                                                    portico::packet_stream_options options = {})
{
    tcp_socket s(ctx);
    if (auto [ec, where] = co_await s.connect(host, port); ec) {
        fail(t, name, "connect", ec);
        co_return std::nullopt;
    }
    packet_stream<tcp_socket> ps(std::move(s), options);
    if (auto [ec] = co_await ps.write_packet(chat::join, name); ec) {
        fail(t, name, "join", ec);
        co_return std::nullopt;
    }
    co_return std::optional<packet_stream<tcp_socket>>(std::move(ps));
}

// snippet-begin: user
// One scripted user: once everyone is in the room, says its lines one at a
// time (each once the room has echoed the previous one back, as a person
// types after seeing their line appear) and hears every user's every line.
task<> user(io_context& ctx, std::string host, std::string port, std::string name, script plan, totals& t)
{
    // Silent for 20 s while lines are due means some were lost: fail and say
    // so, rather than wait forever. The heartbeat answers the server's pings.
    auto ps = co_await join(ctx, host, port, name, t, {.idle_timeout = 20s, .heartbeat = chat::heartbeat()});
    if (!ps) co_return;
    const std::string own_prefix = name + ": ";
    // We are in the room; the welcome counts those before us, and each later
    // arrival is announced. Others may start talking before we have counted
    // everyone: their lines are heard all the same.
    unsigned present = 1;
    unsigned said = 0;
    unsigned heard = 0;
    bool waiting_for_own = false;
    while (heard < plan.users * plan.messages) { // our own lines come back too
        if (present == plan.users + plan.stalled && said < plan.messages && !waiting_for_own) {
            std::string line = "line " + std::to_string(said);
            line.resize(std::max<std::size_t>(line.size(), plan.line_size), '.');
            if (auto [ec] = co_await ps->write_packet(chat::say, line); ec) co_return fail(t, name, "say", ec);
            ++said;
            ++t.sent;
            waiting_for_own = true;
        }
        auto [ec, pkt] = co_await ps->read_packet();
        if (ec) co_return fail(t, name, "hear (after " + std::to_string(heard) + " lines)", ec);
        if (pkt.type == chat::welcome) present += static_cast<unsigned>(std::stoul(std::string(chat::text(pkt))));
        if (pkt.type == chat::joined) ++present;
        if (pkt.type != chat::message) continue; // also departures
        const auto text = chat::text(pkt);
        if (text.find(": line ") == std::string_view::npos) ++t.failures;
        if (text.starts_with(own_prefix)) waiting_for_own = false;
        ++heard;
        ++t.delivered;
    }
    // Leave politely: say we are done, then read until the server closes, so
    // no unread notice makes our close a reset.
    (void)ps->next_layer().shutdown_send();
    for (;;) {
        if (auto [ec, pkt] = co_await ps->read_packet(); ec) break;
    }
}
// snippet-end: user

// A user who joined and then stopped reading, like a client whose program
// hangs: the room must cut it off once its send queue is full, and carry on.
// Called after the others are done: reads what it was sent, and must find the
// connection closed by the server before all of it arrived.
task<> drain_stalled(packet_stream<tcp_socket>& ps, const std::string& name, script plan, totals& t)
{
    unsigned heard = 0;
    for (;;) {
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec == portico::errc::idle_timeout) co_return fail(t, name, "still connected after the others finished", ec);
        if (ec) break; // eof or reset: the server cut us off
        if (pkt.type == chat::message) ++heard;
    }
    if (heard >= plan.users * plan.messages) {
        co_return fail(t, name, "heard everything although it stalled",
                       make_error_code(portico::errc::invalid_argument));
    }
    ++t.cut_off;
}

// The scripted room: the stalled users join first and hold still, then the
// talking users join, wait for everyone, talk, and hear everything.
task<> scripted(io_context& ctx, std::string host, std::string port, script plan, totals& t)
{
    co_await ctx.schedule();
    std::vector<packet_stream<tcp_socket>> stalled;
    for (unsigned i = 0; i < plan.stalled; ++i) {
        // Silent for 10 s after the others finish means the server never cut it off.
        auto ps = co_await join(ctx, host, port, "stalled" + std::to_string(i), t,
                                {.idle_timeout = 10s, .heartbeat = chat::heartbeat()});
        if (!ps) co_return;
        stalled.push_back(std::move(*ps));
    }
    std::vector<task<>> talkers;
    for (unsigned i = 0; i < plan.users; ++i)
        talkers.push_back(user(ctx, host, port, "user" + std::to_string(i), plan, t));
    co_await portico::when_all(std::move(talkers));
    for (unsigned i = 0; i < plan.stalled; ++i)
        co_await drain_stalled(stalled[i], "stalled" + std::to_string(i), plan, t);
}

void interactive(io_context& ctx, const std::string& host, const std::string& port, const std::string& name, totals& t)
{
    // The heartbeat answers the server's pings while the user types nothing.
    auto ps = portico::sync_wait(join(ctx, host, port, name, t, {.heartbeat = chat::heartbeat()}));
    if (!ps) return;
    // The room's side: printed as it arrives, on the pool.
    std::atomic<bool> leaving{false};
    portico::task_group reader;
    // snippet-begin: dispatch
    reader.spawn([](packet_stream<tcp_socket>& s, const std::atomic<bool>& we_left) -> task<> {
        for (;;) {
            auto [ec, pkt] = co_await s.read_packet();
            if (ec == portico::errc::eof) {
                if (!we_left) std::printf("* the server closed the connection\n");
                co_return;
            }
            if (ec) {
                std::printf("* disconnected (%s)\n", ec.message().c_str());
                co_return;
            }
            const auto text = chat::text(pkt);
            const int n = static_cast<int>(text.size());
            switch (pkt.type) {
            case chat::welcome: std::printf("* %.*s others in the room\n", n, text.data()); break;
            case chat::joined: std::printf("* %.*s joined\n", n, text.data()); break;
            case chat::left: std::printf("* %.*s left\n", n, text.data()); break;
            case chat::message: std::printf("%.*s\n", n, text.data()); break;
            case chat::shutdown: std::printf("* %.*s\n", n, text.data()); break;
            case chat::refused: std::printf("* refused: %.*s\n", n, text.data()); break;
            default: break;
            }
        }
    }(*ps, leaving));
    // snippet-end: dispatch
    std::string line;
    while (std::getline(std::cin, line) && line != "EXIT") {
        if (auto [ec] = portico::sync_wait(ps->write_packet(chat::say, line)); ec) break;
    }
    leaving = true;
    (void)ps->next_layer().shutdown_send();
    portico::sync_wait(reader.join());
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
    const std::string host = example::option(argc, argv, "--host", "127.0.0.1");
    const std::string port = example::option(argc, argv, "--port", "25000");
    const script plan{
        .users = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--users", "0"))),
        .messages = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--messages", "10"))),
        .line_size = static_cast<std::size_t>(std::atoi(example::option(argc, argv, "--size", "0"))),
        .stalled = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--stalled", "0"))),
    };

    io_context ctx;
    totals t;
    {
        portico::thread_pool pool(ctx, 2);
        if (plan.users == 0) {
            interactive(ctx, host, port, example::option(argc, argv, "--name", "guest"), t);
        } else {
            portico::sync_wait(scripted(ctx, host, port, plan, t));
        }
        ctx.stop();
    }
    if (plan.users != 0) {
        const bool complete = t.failures == 0 && t.delivered == 1ull * plan.users * plan.users * plan.messages;
        std::printf("%u users: %llu lines said, %llu delivered, %s\n", plan.users, t.sent.load(), t.delivered.load(),
                    complete ? "everyone heard everything" : "with FAILURES");
        if (plan.stalled != 0)
            std::printf("%u of %u stalled users cut off by the server\n", t.cut_off.load(), plan.stalled);
    }
    return t.failures == 0 ? 0 : 1;
}
