#include <portico/net/tcp_acceptor.hpp>
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <vector>

using portico::address_v4;
using portico::buffer;
using portico::endpoint;
using portico::errc;
using portico::io_context;
using portico::task;
using portico::tcp_acceptor;
using portico::tcp_socket;

namespace {

constexpr std::size_t chunk = 8 * 1024;

/// The byte at `offset` of client `id`'s stream: different per client and
/// per position, so a byte delivered to the wrong client, twice, or out of
/// order is noticed.
unsigned char pattern(unsigned id, std::size_t offset)
{
    return static_cast<unsigned char>((offset * 131 + id * 7 + (offset >> 8)) & 0xFF);
}

task<> echo_session(tcp_socket s)
{
    std::array<char, chunk> data;
    for (;;) {
        auto [ec, n] = co_await s.read_some(buffer(data));
        if (ec) co_return;
        auto [write_ec, written] = co_await s.write_all(buffer(data.data(), n));
        if (write_ec) co_return;
    }
}

task<> accept_loop(tcp_acceptor& acceptor, portico::task_group& sessions, std::atomic<unsigned>& accepted)
{
    for (;;) {
        auto [ec, s] = co_await acceptor.accept();
        if (ec) co_return;
        ++accepted;
        sessions.spawn(echo_session(std::move(s)));
    }
}

struct client_result {
    std::size_t sent = 0;
    std::size_t received = 0;
    std::size_t mismatches = 0;
    bool clean_eof = false;
};

task<> send_stream(tcp_socket& s, unsigned id, std::size_t total, client_result& r)
{
    std::array<unsigned char, chunk> out;
    while (r.sent < total) {
        const std::size_t n = std::min(chunk, total - r.sent);
        for (std::size_t i = 0; i < n; ++i) out[i] = pattern(id, r.sent + i);
        auto [ec, written] = co_await s.write_all(buffer(out.data(), n));
        r.sent += written;
        if (ec) co_return;
    }
    (void)s.shutdown_send();
}

task<> receive_stream(tcp_socket& s, unsigned id, std::size_t total, client_result& r)
{
    std::array<unsigned char, chunk> in;
    for (;;) {
        auto [ec, n] = co_await s.read_some(buffer(in));
        if (ec) {
            r.clean_eof = ec == errc::eof && r.received == total;
            co_return;
        }
        for (std::size_t i = 0; i < n; ++i) r.mismatches += in[i] != pattern(id, r.received + i);
        r.received += n;
    }
}

task<> client(io_context& ctx, endpoint server, unsigned id, std::size_t total, client_result& r)
{
    tcp_socket s(ctx);
    auto [ec] = co_await s.connect(server);
    if (ec) co_return;
    // Both directions at once: 100 KiB is more than the socket buffers hold.
    co_await portico::when_all(send_stream(s, id, total, r), receive_stream(s, id, total, r));
}

} // namespace

PORTICO_IO_TEST_CASE("1,000 concurrent echo clients move 100 KiB each, then everything is released",
                     "[tcp_load][scale]")
{
    constexpr unsigned clients = 1000;
    constexpr std::size_t total = 100 * 1024;
    const auto handles_before = portico::test::process_handles();
    const auto outstanding_before = ctx.outstanding_work();

    std::vector<client_result> results(clients);
    std::atomic<unsigned> accepted{0};
    {
        tcp_acceptor acceptor(ctx);
        REQUIRE_FALSE(acceptor.listen(endpoint{address_v4::loopback(), 0}).error());
        const endpoint server = acceptor.local_endpoint().value();
        portico::task_group sessions;
        auto run_clients = [&]() -> task<> {
            std::vector<task<>> all;
            all.reserve(clients);
            for (unsigned i = 0; i < clients; ++i) all.push_back(client(ctx, server, i, total, results[i]));
            co_await portico::when_all(std::move(all));
            acceptor.close();
        };
        co_await portico::when_all(accept_loop(acceptor, sessions, accepted), run_clients());
        co_await sessions.join();
    }

    unsigned intact = 0;
    for (const auto& r : results) {
        intact += r.sent == total && r.received == total && r.mismatches == 0 && r.clean_eof;
    }
    CHECK(accepted == clients);
    CHECK(intact == clients);

    // The closed acceptor's AcceptEx slots complete asynchronously; give the
    // pool turns until they have (each schedule() lets queued packets run),
    // for a time, not a number of turns: on io_uring a turn is no system
    // call (the post stays on this thread) and the slots complete on other
    // threads' rings, which 100,000 turns did not always leave time to run.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ctx.outstanding_work() != outstanding_before && std::chrono::steady_clock::now() < give_up) {
        co_await ctx.schedule();
    }
    CHECK(ctx.outstanding_work() == outstanding_before);
    CHECK(portico::test::process_handles() == handles_before);
}
