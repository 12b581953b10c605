// The first program of docs/getting-started.md: an echo server. Stop it with Ctrl+C.
#include <portico/portico.hpp>

#include <cstdio>
#include <cstdlib>

using namespace portico;

task<> session(tcp_socket s)
{
    std::array<char, 4096> data;
    for (;;) {
        auto [ec, n] = co_await s.read_some(buffer(data));
        if (ec) co_return; // eof: the client left
        auto [write_ec, written] = co_await s.write_all(buffer(data.data(), n));
        if (write_ec) co_return;
    }
}

task<> serve(io_context& ctx, tcp_acceptor& acceptor)
{
    co_await ctx.schedule(); // from here on, on the pool
    for (;;) {
        auto [ec, s] = co_await acceptor.accept();
        if (ec) co_return;
        ctx.spawn(session(std::move(s))); // one coroutine per client
    }
}

int main(int argc, char** argv)
{
    io_context ctx;
    tcp_acceptor acceptor(ctx);
    const auto port = static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 25000);
    acceptor.listen({address_v4::any(), port}).value(); // throws if the port is taken
    std::printf("listening on %s\n", acceptor.local_endpoint().value().to_string().c_str());
    std::fflush(stdout);
    thread_pool pool(ctx, 2); // two threads serve every client
    sync_wait(serve(ctx, acceptor));
}
