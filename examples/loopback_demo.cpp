// portico demo: a tiny server and client talking over loopback.
//
// Both ends are coroutines on one io_context served by two pool threads; every
// receive and send is an overlapped WSARecv/WSASend whose completion the pool
// dequeues with GetQueuedCompletionStatusEx. The socket operations here are a
// preview written against portico's scheduler: the TCP layer (tcp_acceptor,
// tcp_socket) replaces them with the library's own.
//
//   loopback_demo [--rounds N]

#include <portico/portico.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/windows.hpp>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace {

using portico::io_context;
using portico::task;

[[noreturn]] void fail(const char* what) { throw std::system_error(::WSAGetLastError(), std::system_category(), what); }

// One overlapped WSARecv or WSASend on a socket associated with the context.
class socket_op : portico::detail::win::overlapped_op {
public:
    socket_op(portico::detail::win::scheduler& sched, SOCKET s, char* data, std::size_t size, bool send)
        : overlapped_op(&socket_op::on_complete), scheduler_(sched), socket_(s), send_(send)
    {
        buffer_.buf = data;
        buffer_.len = static_cast<ULONG>(size);
    }

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> h)
    {
        continuation_ = h;
        DWORD flags = 0;
        // Counted as outstanding before the call: its completion may be
        // dispatched (and uncounted) before WSARecv even returns.
        scheduler_.work_started();
        const int rc = send_ ? ::WSASend(socket_, &buffer_, 1, nullptr, 0, this, nullptr)
                             : ::WSARecv(socket_, &buffer_, 1, nullptr, &flags, this, nullptr);
        if (rc == SOCKET_ERROR && ::WSAGetLastError() != WSA_IO_PENDING) {
            scheduler_.work_finished();
            fail(send_ ? "WSASend" : "WSARecv");
        }
        // NOTE: even an immediate success queues a completion packet (the socket
        // is not in skip-on-success mode), so the pool resumes us either way.
        return true;
    }

    std::size_t await_resume() const
    {
        if (status_ != 0) throw std::runtime_error("socket operation failed");
        return bytes_;
    }

private:
    static void on_complete(overlapped_op* op, ULONG_PTR status, DWORD bytes) noexcept
    {
        auto* self = static_cast<socket_op*>(op);
        self->status_ = status;
        self->bytes_ = bytes;
        self->continuation_.resume();
    }

    portico::detail::win::scheduler& scheduler_;
    SOCKET socket_;
    bool send_;
    WSABUF buffer_{};
    std::coroutine_handle<> continuation_;
    ULONG_PTR status_ = 0;
    std::size_t bytes_ = 0;
};

struct connection {
    io_context& ctx;
    SOCKET s;
};

socket_op async_receive(connection c, char* data, std::size_t size)
{
    return {c.ctx.scheduler_impl(), c.s, data, size, false};
}
socket_op async_send(connection c, const std::string& text)
{
    return {c.ctx.scheduler_impl(), c.s, const_cast<char*>(text.data()), text.size(), true};
}

task<> server(connection s, int rounds)
{
    char buffer[256];
    for (int i = 0; i < rounds; ++i) {
        const std::size_t n = co_await async_receive(s, buffer, sizeof buffer);
        const std::string line(buffer, n);
        std::printf("server: received \"%s\", echoing it back\n", line.c_str());
        co_await async_send(s, line);
    }
}

task<> client(connection s, int rounds)
{
    char buffer[256];
    for (int i = 1; i <= rounds; ++i) {
        const std::string line = "hello " + std::to_string(i);
        co_await async_send(s, line);
        std::printf("client: sent \"%s\"\n", line.c_str());
        std::size_t got = 0;
        while (got < line.size()) got += co_await async_receive(s, buffer + got, sizeof buffer - got);
        std::printf("client: echo \"%s\" %s\n", std::string(buffer, got).c_str(),
                    std::string_view(buffer, got) == line ? "matches" : "DIFFERS");
    }
}

SOCKET make_socket()
{
    SOCKET s = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
    if (s == INVALID_SOCKET) fail("WSASocketW");
    return s;
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
        io_context ctx; // starts Winsock
        std::printf("portico %d.%d.%d demo: a server and a client over loopback\n", PORTICO_VERSION_MAJOR,
                    PORTICO_VERSION_MINOR, PORTICO_VERSION_PATCH);

        SOCKET listener = make_socket();
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) fail("bind");
        if (::listen(listener, SOMAXCONN) != 0) fail("listen");
        int length = sizeof address;
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
        std::printf("listening on 127.0.0.1:%u\n", ntohs(address.sin_port));

        // Connect and accept synchronously: loopback completes the handshake
        // from the backlog. The TCP layer does this with ConnectEx/AcceptEx.
        SOCKET client_socket = make_socket();
        if (::connect(client_socket, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) fail("connect");
        SOCKET server_socket = ::accept(listener, nullptr, nullptr);
        if (server_socket == INVALID_SOCKET) fail("accept");
        std::printf("client: connected; server: accepted\n");

        auto& scheduler = ctx.scheduler_impl();
        scheduler.associate(reinterpret_cast<HANDLE>(server_socket));
        scheduler.associate(reinterpret_cast<HANDLE>(client_socket));
        {
            portico::thread_pool pool(ctx, 2);
            portico::sync_wait([](io_context& c, SOCKET srv, SOCKET cli, int n) -> task<> {
                co_await c.schedule();
                co_await portico::when_all(server({c, srv}, n), client({c, cli}, n));
            }(ctx, server_socket, client_socket, rounds));
            ctx.stop();
        }
        ::closesocket(client_socket);
        ::closesocket(server_socket);
        ::closesocket(listener);

        const auto stats = ctx.statistics();
        std::printf("done: %d round trips; %llu completions dequeued in %llu calls (%.2f per call)\n", rounds,
                    static_cast<unsigned long long>(stats.completions),
                    static_cast<unsigned long long>(stats.dequeue_calls), stats.completions_per_batch());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo failed: %s\n", e.what());
        return 1;
    }
}
