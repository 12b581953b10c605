// portico example: the TCP echo client. Sends lines typed on stdin (as in
// the classic course: "EXIT" or end of input stops it), or random payloads,
// and checks that every byte comes back.
//
//   echo_client [--host ADDRESS] [--port N]                         lines from stdin
//   echo_client [--host ADDRESS] [--port N] --count N [--size BYTES] [--clients N]
//
//   --host     server address (default 127.0.0.1)
//   --port     server port (default 25000)
//   --count    random payloads per connection, instead of reading stdin
//   --size     bytes per payload (default 1024)
//   --clients  connections at once, each sending --count payloads (default 1)
//
// Prints one line per echoed line, or a summary; exits non-zero if anything
// failed or came back different.

#include <portico/portico.hpp>

#include "example_support.hpp"
#include "untrusted_text.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using portico::buffer;
using portico::endpoint;
using portico::io_context;
using portico::task;
using portico::tcp_socket;

struct totals {
    std::atomic<unsigned long long> messages{0};
    std::atomic<unsigned long long> bytes{0};
    std::atomic<unsigned> failures{0};
};

void fail(totals& t, const char* what, const std::error_code& ec)
{
    std::printf("echo_client: %s: %s\n", what, ec.message().c_str());
    ++t.failures;
}

// One typed line: send it, read the echo. TCP has no message boundaries, so
// the client reads exactly as many bytes as it sent.
task<> echo_line(tcp_socket& s, std::string line, totals& t)
{
    if (auto [ec, n] = co_await s.write_all(buffer(line)); ec) co_return fail(t, "send", ec);
    std::string echo(line.size(), '\0');
    if (auto [ec, n] = co_await s.read_all(buffer(echo)); ec) co_return fail(t, "receive", ec);
    if (echo != line) ++t.failures;
    // Escaped, as anything a server sends: it must not drive the terminal.
    // A newline at the end is the line's own and ends the printed line.
    std::string_view shown(echo);
    if (shown.ends_with('\n')) shown.remove_suffix(1);
    std::printf("from server: %s\n", example::escaped(shown).c_str());
    ++t.messages;
    t.bytes += echo.size();
}

task<> connect(tcp_socket& s, endpoint server, totals& t)
{
    if (auto [ec] = co_await s.connect(server); ec) fail(t, "connect", ec);
}

// Lines from stdin, like the notes' gets_s loop. Reading stdin blocks, so it
// happens here on the main thread; each exchange runs on the pool.
void lines(io_context& ctx, endpoint server, totals& t)
{
    tcp_socket s(ctx);
    portico::sync_wait(connect(s, server, t));
    std::string line;
    while (t.failures == 0 && std::getline(std::cin, line) && line != "EXIT") {
        // The newline marks where a line ends on the server's screen.
        portico::sync_wait(echo_line(s, line + '\n', t));
    }
    // Say we are done sending; the server sees eof and closes its side.
    if (s.is_open()) (void)s.shutdown_send();
}

task<> payloads(io_context& ctx, endpoint server, unsigned count, std::size_t size, unsigned seed, totals& t)
{
    tcp_socket s(ctx);
    if (auto [ec] = co_await s.connect(server); ec) co_return fail(t, "connect", ec);
    std::mt19937 random(seed);
    std::vector<unsigned char> sent(size);
    std::vector<unsigned char> echo(size);
    for (unsigned i = 0; i < count; ++i) {
        for (auto& b : sent) b = static_cast<unsigned char>(random());
        // Send and receive at once: a payload larger than the socket buffers
        // would otherwise stall both ends.
        auto [w, r] = co_await portico::when_all(s.write_all(buffer(sent)), s.read_all(buffer(echo)));
        if (w.error()) co_return fail(t, "send", w.error());
        if (r.error()) co_return fail(t, "receive", r.error());
        if (echo != sent) {
            std::printf("echo_client: payload %u came back different\n", i);
            ++t.failures;
            co_return;
        }
        ++t.messages;
        t.bytes += size;
    }
    (void)s.shutdown_send();
    // Wait for the server's eof so it has seen everything before we close.
    unsigned char byte;
    auto [ec, n] = co_await s.read_some(buffer(&byte, 1));
    if (ec != portico::errc::eof) fail(t, "waiting for the server to close", ec);
}

task<> many(io_context& ctx, endpoint server, unsigned clients, unsigned count, std::size_t size, totals& t)
{
    co_await ctx.schedule();
    std::vector<task<>> all;
    for (unsigned i = 0; i < clients; ++i) all.push_back(payloads(ctx, server, count, size, 1234 + i, t));
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
        std::fprintf(stderr, "echo_client: --host wants a numeric IPv4 or IPv6 address\n");
        return 2;
    }
    const endpoint server{host.value_unchecked(),
                          static_cast<unsigned short>(std::atoi(example::option(argc, argv, "--port", "25000")))};
    const auto count = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--count", "0")));
    const auto size = static_cast<std::size_t>(std::atoll(example::option(argc, argv, "--size", "1024")));
    const auto clients = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--clients", "1")));

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
        std::printf("echoed %llu payloads, %llu bytes, %s\n", t.messages.load(), t.bytes.load(),
                    t.failures == 0 ? "all intact" : "with FAILURES");
    }
    return t.failures == 0 ? 0 : 1;
}
