// The consumer test's program: a packet sent over loopback and echoed back,
// through portico as a user's project gets it (tests/consumer/CMakeLists.txt).
#include <portico/portico.hpp>

#include <cstdio>
#include <string>
#include <string_view>

namespace {

portico::task<std::string> round_trip(portico::io_context& ctx)
{
    co_await ctx.schedule();
    portico::tcp_acceptor acceptor(ctx);
    if (auto [ec] = acceptor.listen({portico::address_v4::loopback(), 0}); ec) co_return "listen: " + ec.message();
    portico::tcp_socket client(ctx);
    if (auto [ec] = co_await client.connect(acceptor.local_endpoint().value()); ec)
        co_return "connect: " + ec.message();
    auto [accept_ec, accepted] = co_await acceptor.accept();
    if (accept_ec) co_return "accept: " + accept_ec.message();

    portico::packet_stream<portico::tcp_socket> server(std::move(accepted));
    portico::packet_stream<portico::tcp_socket> peer(std::move(client));
    if (auto [ec] = co_await peer.write_packet(7, std::string_view("ping")); ec) co_return "write: " + ec.message();
    auto [read_ec, question] = co_await server.read_packet();
    if (read_ec) co_return "read: " + read_ec.message();
    if (auto [ec] = co_await server.write_packet(question.type, question.body); ec) co_return "echo: " + ec.message();
    auto [answer_ec, answer] = co_await peer.read_packet();
    if (answer_ec) co_return "answer: " + answer_ec.message();
    const std::string_view text(reinterpret_cast<const char*>(answer.body.data()), answer.body.size());
    co_return answer.type == 7 && text == "ping" ? "ok" : "wrong answer";
}

} // namespace

int main()
{
    portico::io_context ctx;
    std::string result;
    {
        portico::thread_pool pool(ctx, 1);
        result = portico::sync_wait(round_trip(ctx));
        ctx.stop();
    }
    std::printf("consumer (portico %d.%d.%d): %s\n", PORTICO_VERSION_MAJOR, PORTICO_VERSION_MINOR,
                PORTICO_VERSION_PATCH, result.c_str());
    return result == "ok" ? 0 : 1;
}
