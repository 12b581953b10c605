// portico example: the chat client. Joins chat_server with a nickname and
// shows what the room says; or, with --users, plays several users at once
// and checks that everyone heard everything.
//
//   chat_client [--host ADDRESS] [--port N] [--name NICKNAME]          lines from stdin
//   chat_client [--host ADDRESS] [--port N] --users N [--messages M]
//
//   --host      server address or name (default 127.0.0.1)
//   --port      server port (default 25000)
//   --name      nickname (default "guest")
//   --users     users to play at once, instead of reading stdin
//   --messages  lines each user says (default 10)
//
// With stdin, each line is said to the room until "EXIT" or the end of
// input. With --users, every user joins, waits until all are in the room,
// says its lines, and reads until it has heard every user's every line; the
// summary says how many were sent and delivered. Exits non-zero on failure.

#include <portico/portico.hpp>

#include "chat_protocol.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using portico::io_context;
using portico::packet_stream;
using portico::task;
using portico::tcp_socket;

struct totals {
    std::atomic<unsigned long long> sent{0};
    std::atomic<unsigned long long> delivered{0};
    std::atomic<unsigned> failures{0};
};

void fail(totals& t, const std::string& who, const char* what, const std::error_code& ec)
{
    std::printf("chat_client: %s: %s: %s\n", who.c_str(), what, ec.message().c_str());
    ++t.failures;
}

// Connects (the host may be a name) and joins; yields the stream, or nothing.
task<std::optional<packet_stream<tcp_socket>>> join(io_context& ctx, std::string host, std::string port,
                                                    std::string name, totals& t)
{
    tcp_socket s(ctx);
    if (auto [ec, where] = co_await s.connect(host, port); ec) {
        fail(t, name, "connect", ec);
        co_return std::nullopt;
    }
    packet_stream<tcp_socket> ps(std::move(s));
    if (auto [ec] = co_await ps.write_packet(chat::join, name); ec) {
        fail(t, name, "join", ec);
        co_return std::nullopt;
    }
    co_return std::optional<packet_stream<tcp_socket>>(std::move(ps));
}

// snippet-begin: user
// One scripted user: in the room with everyone, says its lines, hears all.
task<> user(io_context& ctx, std::string host, std::string port, std::string name, unsigned users, unsigned messages,
            totals& t)
{
    auto ps = co_await join(ctx, host, port, name, t);
    if (!ps) co_return;
    // Wait until the whole room is here: the welcome says how many were
    // before us, then each later arrival is announced.
    unsigned present = 0;
    while (present + 1 < users) {
        auto [ec, pkt] = co_await ps->read_packet();
        if (ec) co_return fail(t, name, "waiting for the room", ec);
        if (pkt.type == chat::welcome) present += static_cast<unsigned>(std::stoul(std::string(chat::text(pkt))));
        if (pkt.type == chat::joined) ++present;
    }
    // Say our lines while hearing everyone's (our own come back too).
    auto say = [&]() -> task<> {
        for (unsigned i = 0; i < messages; ++i) {
            if (auto [ec] = co_await ps->write_packet(chat::say, "line " + std::to_string(i)); ec) {
                co_return fail(t, name, "say", ec);
            }
            ++t.sent;
        }
    };
    auto hear = [&]() -> task<> {
        for (unsigned heard = 0; heard < users * messages;) {
            auto [ec, pkt] = co_await ps->read_packet();
            if (ec) co_return fail(t, name, "hear", ec);
            if (pkt.type != chat::message) continue; // joins and departures
            if (chat::text(pkt).find(": line ") == std::string_view::npos) ++t.failures;
            ++heard;
            ++t.delivered;
        }
    };
    co_await portico::when_all(say(), hear());
    (void)ps->next_layer().shutdown_send();
}
// snippet-end: user

void interactive(io_context& ctx, const std::string& host, const std::string& port, const std::string& name, totals& t)
{
    auto ps = portico::sync_wait(join(ctx, host, port, name, t));
    if (!ps) return;
    // The room's side: printed as it arrives, on the pool.
    portico::task_group reader;
    reader.spawn([](packet_stream<tcp_socket>& s) -> task<> {
        for (;;) {
            auto [ec, pkt] = co_await s.read_packet();
            if (ec) co_return;
            const auto text = chat::text(pkt);
            const int n = static_cast<int>(text.size());
            switch (pkt.type) {
            case chat::welcome: std::printf("* %.*s others in the room\n", n, text.data()); break;
            case chat::joined: std::printf("* %.*s joined\n", n, text.data()); break;
            case chat::left: std::printf("* %.*s left\n", n, text.data()); break;
            case chat::message: std::printf("%.*s\n", n, text.data()); break;
            case chat::shutdown: std::printf("* %.*s\n", n, text.data()); break;
            default: break;
            }
        }
    }(*ps));
    std::string line;
    while (std::getline(std::cin, line) && line != "EXIT") {
        if (auto [ec] = portico::sync_wait(ps->write_packet(chat::say, line)); ec) break;
    }
    (void)ps->next_layer().shutdown_send();
    portico::sync_wait(reader.join());
}

const char* option(int argc, char** argv, std::string_view name, const char* fallback)
{
    for (int i = 1; i + 1 < argc; ++i) {
        if (argv[i] == name) return argv[i + 1];
    }
    return fallback;
}

} // namespace

int main(int argc, char** argv)
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::string host = option(argc, argv, "--host", "127.0.0.1");
    const std::string port = option(argc, argv, "--port", "25000");
    const auto users = static_cast<unsigned>(std::atoi(option(argc, argv, "--users", "0")));
    const auto messages = static_cast<unsigned>(std::atoi(option(argc, argv, "--messages", "10")));

    io_context ctx;
    totals t;
    {
        portico::thread_pool pool(ctx, 2);
        if (users == 0) {
            interactive(ctx, host, port, option(argc, argv, "--name", "guest"), t);
        } else {
            portico::sync_wait(
                [](io_context& c, std::string h, std::string p, unsigned n, unsigned m, totals& tt) -> task<> {
                    co_await c.schedule();
                    std::vector<task<>> all;
                    for (unsigned i = 0; i < n; ++i) all.push_back(user(c, h, p, "user" + std::to_string(i), n, m, tt));
                    co_await portico::when_all(std::move(all));
                }(ctx, host, port, users, messages, t));
        }
        ctx.stop();
    }
    if (users != 0) {
        std::printf("%u users: %llu lines said, %llu delivered, %s\n", users, t.sent.load(), t.delivered.load(),
                    t.failures == 0 && t.delivered == 1ull * users * users * messages ? "everyone heard everything"
                                                                                      : "with FAILURES");
    }
    return t.failures == 0 ? 0 : 1;
}
