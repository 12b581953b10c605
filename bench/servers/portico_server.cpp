// The portico benchmark server (bench/PROTOCOL.md): echo, packet echo and
// sink, written the way the examples teach, so what is measured is what a
// user of the library gets.

#include "harness.hpp"

#include <portico/portico.hpp>

#include <array>
#include <cstdio>
#include <memory>

namespace {

using portico::buffer;
using portico::io_context;
using portico::task;
using portico::tcp_socket;

// Counts the connection as open for as long as the session lives.
struct open_connection {
    explicit open_connection(bench::counters& c) : counters(c)
    {
        ++counters.accepted;
        ++counters.open;
    }
    ~open_connection() { --counters.open; }
    open_connection(const open_connection&) = delete;
    open_connection& operator=(const open_connection&) = delete;

    bench::counters& counters;
};

// The buffer lives in the coroutine frame: one allocation per connection,
// recycled by the frame cache when the connection ends.
task<> echo(tcp_socket s)
{
    std::array<std::byte, bench::receive_buffer_size> data;
    for (;;) {
        auto [ec, n] = co_await s.read_some(buffer(data));
        if (ec) co_return;
        if (auto [write_ec, written] = co_await s.write_all(buffer(data.data(), n)); write_ec) co_return;
    }
}

task<> sink(tcp_socket s)
{
    std::array<std::byte, bench::receive_buffer_size> data;
    for (;;) {
        if (auto [ec, n] = co_await s.read_some(buffer(data)); ec) co_return;
    }
}

// Replies are queued by copy: every packet a receive brought in is answered
// before the one write that carries all the answers (queue_packet).
task<> packet_echo(tcp_socket s)
{
    portico::packet_stream ps{std::move(s), portico::packet_stream_options{
                                                .receive_buffer = bench::receive_buffer_size,
                                            }};
    for (;;) {
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec) co_return;
        if (ps.queue_packet(pkt.type, pkt.body)) co_return;
    }
}

task<> session(tcp_socket s, bench::mode mode, bench::counters& counters)
{
    open_connection counted(counters);
    (void)s.set_no_delay(true);
    switch (mode) {
    case bench::mode::echo: co_await echo(std::move(s)); break;
    case bench::mode::packet: co_await packet_echo(std::move(s)); break;
    case bench::mode::sink: co_await sink(std::move(s)); break;
    }
}

task<> serve(io_context& ctx, portico::tcp_acceptor& acceptor, bench::mode mode, bench::counters& counters)
{
    co_await ctx.schedule();
    portico::task_group sessions;
    for (;;) {
        auto [ec, s] = co_await acceptor.accept();
        if (ec) break; // the context was stopped: "quit"
        sessions.spawn(session(std::move(s), mode, counters));
    }
    // Each session's pending receive ends with operation_aborted.
    sessions.request_stop();
    co_await sessions.join();
}

} // namespace

int main(int argc, char** argv)
{
    bench::start_counting();
    const bench::options opts = bench::parse_options(argc, argv);

    io_context ctx;
    portico::tcp_acceptor acceptor(ctx);
    if (auto [ec] = acceptor.listen(portico::endpoint{portico::address_v4::loopback(), opts.port}); ec) {
        std::fprintf(stderr, "bench_portico: cannot listen: %s\n", ec.message().c_str());
        return 1;
    }
    bench::print_listening(acceptor.local_endpoint().value().port());

    bench::counters counters;
    {
        portico::thread_pool pool(ctx, opts.threads);
        // The control loop owns the main thread; the server runs on the pool
        // until "quit" stops the context, which ends the accept loop.
        std::thread control([&] {
            bench::run_control("portico", opts, counters);
            ctx.stop();
        });
        portico::sync_wait(serve(ctx, acceptor, opts.mode, counters));
        control.join();
    }
    return 0;
}
