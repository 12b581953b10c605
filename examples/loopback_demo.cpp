// portico demo: a tiny server and client talking over loopback.
//
// Both ends are coroutines on one io_context served by two pool threads. The
// client connects with tcp_socket::connect (ConnectEx); every receive and send
// is an overlapped WSARecv/WSASend whose completion a pool thread dequeues
// with GetQueuedCompletionStatusEx, or, when the call succeeds at once,
// continues inline. Until tcp_acceptor lands, the server side is accepted
// with a plain Winsock accept() and handed to a tcp_socket.
//
//   loopback_demo [--rounds N]

#include <portico/portico.hpp>
#include <portico/detail/win/sockaddr.hpp>
#include <portico/detail/win/windows.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

namespace {

using portico::buffer;
using portico::io_context;
using portico::task;
using portico::tcp_socket;

task<> server(tcp_socket& s, int rounds)
{
    char data[256];
    for (int i = 0; i < rounds; ++i) {
        auto [ec, n] = co_await s.read_some(buffer(data));
        if (ec) {
            std::printf("server: %s\n", ec.message().c_str());
            co_return;
        }
        std::printf("server: received \"%.*s\", echoing it back\n", static_cast<int>(n), data);
        co_await s.write_all(buffer(static_cast<const void*>(data), n));
    }
}

task<> client(tcp_socket& s, int rounds)
{
    for (int i = 1; i <= rounds; ++i) {
        const std::string line = "hello " + std::to_string(i);
        co_await s.write_all(buffer(line));
        std::printf("client: sent \"%s\"\n", line.c_str());
        std::string echo(line.size(), '\0');
        auto [ec, n] = co_await s.read(buffer(echo));
        if (ec) {
            std::printf("client: %s\n", ec.message().c_str());
            co_return;
        }
        std::printf("client: echo \"%s\" %s\n", echo.c_str(), echo == line ? "matches" : "DIFFERS");
    }
}

task<> run(io_context& ctx, int rounds)
{
    co_await ctx.schedule();

    // A listening socket, port chosen by the system.
    SOCKET listener = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
    SOCKADDR_STORAGE address{};
    int length = portico::detail::win::to_sockaddr({portico::address_v4::loopback(), 0}, address);
    if (::bind(listener, reinterpret_cast<SOCKADDR*>(&address), length) != 0 || ::listen(listener, SOMAXCONN) != 0) {
        throw std::system_error(::WSAGetLastError(), std::system_category(), "bind/listen");
    }
    ::getsockname(listener, reinterpret_cast<SOCKADDR*>(&address), &length);
    const auto local = *portico::detail::win::from_sockaddr(reinterpret_cast<SOCKADDR*>(&address), length);
    std::printf("listening on %s\n", local.to_string().c_str());

    tcp_socket client_socket(ctx);
    if (auto [ec] = co_await client_socket.connect(local); ec) throw std::system_error(ec, "connect");
    tcp_socket server_socket(ctx);
    // The handshake completed from the backlog, so this accept() returns at once.
    const SOCKET accepted = ::accept(listener, nullptr, nullptr);
    ::closesocket(listener);
    if (auto [ec] = server_socket.assign(static_cast<tcp_socket::native_handle_type>(accepted)); ec) {
        throw std::system_error(ec, "assign");
    }
    std::printf("client: connected from %s; server: accepted\n",
                client_socket.local_endpoint().value().to_string().c_str());

    co_await portico::when_all(server(server_socket, rounds), client(client_socket, rounds));
}

} // namespace

int main(int argc, char** argv)
{
    int rounds = 3;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        io_context ctx;
        std::printf("portico %d.%d.%d demo: a server and a client over loopback\n", PORTICO_VERSION_MAJOR,
                    PORTICO_VERSION_MINOR, PORTICO_VERSION_PATCH);
        {
            portico::thread_pool pool(ctx, 2);
            portico::sync_wait(run(ctx, rounds));
            ctx.stop();
        }
        const auto stats = ctx.statistics();
        std::printf("done: %d round trips; %llu sends and %llu receives, %llu completed inline; "
                    "%llu completions dequeued in %llu calls\n",
                    rounds, static_cast<unsigned long long>(stats.send_calls),
                    static_cast<unsigned long long>(stats.recv_calls),
                    static_cast<unsigned long long>(stats.inline_completions),
                    static_cast<unsigned long long>(stats.completions),
                    static_cast<unsigned long long>(stats.dequeue_calls));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo failed: %s\n", e.what());
        return 1;
    }
}
