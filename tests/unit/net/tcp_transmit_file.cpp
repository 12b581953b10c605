// tcp_socket::transmit_file: head, file bytes and tail with the system's
// file-sending call, its edge cases and its faults.
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/deadline.hpp>
#include <portico/file/random_access_file.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/allocation_count.hpp"
#include "support/loopback.hpp"
#include "support/temp_file.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using portico::buffer;
using portico::errc;
using portico::file_access;
using portico::file_creation;
using portico::io_context;
using portico::io_result;
using portico::random_access_file;
using portico::task;
using portico::tcp_socket;
using portico::test::connected_pair;
using portico::test::content;
using portico::test::temp_file;

namespace {

// A file holding content(0, size), open for reading.
task<random_access_file> file_of(io_context& ctx, const temp_file& path, std::size_t size)
{
    random_access_file f(ctx);
    auto [open_ec] = f.open(path.path(), file_access::read_write, file_creation::create_new);
    if (open_ec) throw std::system_error(open_ec, "open");
    auto [write_ec, written] = co_await f.write_all_at(0, buffer(content(0, size)));
    if (write_ec) throw std::system_error(write_ec, "write");
    co_return f;
}

// Reads exactly n bytes (or until an error), then returns them.
task<std::vector<char>> receive(tcp_socket& s, std::size_t n)
{
    std::vector<char> got(n);
    auto [ec, received] = co_await s.read_all(buffer(got));
    got.resize(received);
    co_return got;
}

std::vector<char> joined(const std::string& head, const std::vector<char>& body, const std::string& tail)
{
    std::vector<char> out(head.begin(), head.end());
    out.insert(out.end(), body.begin(), body.end());
    out.insert(out.end(), tail.begin(), tail.end());
    return out;
}

} // namespace

PORTICO_IO_TEST_CASE("transmit_file sends head, the whole file and tail, in one call", "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    random_access_file f = co_await file_of(ctx, path, 1'000'000);
    const std::string head = "HEAD: one packet header";
    const std::string tail = "TAIL";
    const auto calls_before = ctx.statistics().transmit_file_calls;
    const std::size_t total = head.size() + 1'000'000 + tail.size();
    auto [sent, got] = co_await portico::when_all(
        server.transmit_file(f, 0, portico::to_end_of_file, buffer(head), buffer(tail)), receive(client, total));
    CHECK_FALSE(sent.error());
    CHECK(sent.value_unchecked() == total);
    CHECK(ctx.statistics().transmit_file_calls - calls_before == 1);
    CHECK(got == joined(head, content(0, 1'000'000), tail));
}

PORTICO_IO_TEST_CASE("transmit_file of a range, and of the rest of the file from an offset", "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    random_access_file f = co_await file_of(ctx, path, 100'000);
    auto [range, got] = co_await portico::when_all(server.transmit_file(f, 12'345, 5'000), receive(client, 5'000));
    CHECK_FALSE(range.error());
    CHECK(range.value_unchecked() == 5'000);
    CHECK(got == content(12'345, 5'000));

    auto [rest, got_rest] =
        co_await portico::when_all(server.transmit_file(f, 99'000, portico::to_end_of_file), receive(client, 1'000));
    CHECK_FALSE(rest.error());
    CHECK(rest.value_unchecked() == 1'000);
    CHECK(got_rest == content(99'000, 1'000));
}

PORTICO_IO_TEST_CASE("transmit_file of 0 bytes: no call without head or tail, only them with", "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    random_access_file f = co_await file_of(ctx, path, 1000);

    const auto calls_before = ctx.statistics().transmit_file_calls;
    auto [nothing_ec, nothing] = co_await server.transmit_file(f, 0, 0);
    CHECK_FALSE(nothing_ec);
    CHECK(nothing == 0);
    // From the end, or past it, "the rest" is nothing too.
    auto [rest_ec, rest] = co_await server.transmit_file(f, 5000, portico::to_end_of_file);
    CHECK_FALSE(rest_ec);
    CHECK(rest == 0);
    CHECK(ctx.statistics().transmit_file_calls == calls_before); // no system call at all

    const std::string head = "only the head";
    const std::string tail = "and the tail";
    auto [sent, got] = co_await portico::when_all(server.transmit_file(f, 10, 0, buffer(head), buffer(tail)),
                                                  receive(client, head.size() + tail.size()));
    CHECK_FALSE(sent.error());
    CHECK(sent.value_unchecked() == head.size() + tail.size());
    CHECK(got == joined(head, {}, tail));
    CHECK(ctx.statistics().transmit_file_calls == calls_before + 1);
}

PORTICO_IO_TEST_CASE("transmit_file of more than the file holds fails with eof before sending anything",
                     "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    random_access_file f = co_await file_of(ctx, path, 1000);
    const std::string head = "a head that must not go out";
    auto [ec, n] = co_await server.transmit_file(f, 500, 501, buffer(head));
    CHECK(ec == errc::eof);
    CHECK(n == 0);
    auto [past_ec, past_n] = co_await server.transmit_file(f, 2000, 1);
    CHECK(past_ec == errc::eof);
    CHECK(past_n == 0);
    // Nothing went out: the first byte the client reads is the next write's.
    const char marker = '!';
    auto [write_ec, written] = co_await server.write_some(buffer(&marker, 1));
    REQUIRE_FALSE(write_ec);
    char first = 0;
    auto [read_ec, read_n] = co_await client.read_some(buffer(&first, 1));
    CHECK_FALSE(read_ec);
    CHECK(first == '!');
}

PORTICO_IO_TEST_CASE("transmit_file in several calls sends head with the first and tail with the last",
                     "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    random_access_file f = co_await file_of(ctx, path, 10'500);
    const std::string head = "<head>";
    const std::string tail = "</tail>";
    const auto calls_before = ctx.statistics().transmit_file_calls;
    // 1,000 file bytes per call instead of a GiB: 11 calls for 10,500 bytes.
    auto transmit =
        server.transmit_file(f, 0, portico::to_end_of_file, buffer(head), buffer(tail), {.bytes_per_call = 1000});
    const std::size_t total = head.size() + 10'500 + tail.size();
    auto [sent, got] = co_await portico::when_all(std::move(transmit), receive(client, total));
    CHECK_FALSE(sent.error());
    CHECK(sent.value_unchecked() == total);
    CHECK(ctx.statistics().transmit_file_calls - calls_before == 11);
    CHECK(got == joined(head, content(0, 10'500), tail));
}

PORTICO_IO_TEST_CASE("transmit_file: bytes_per_call 0 means one call per GiB; a call_timeout that is not reached "
                     "changes nothing",
                     "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    random_access_file f = co_await file_of(ctx, path, 10'500);
    const auto calls_before = ctx.statistics().transmit_file_calls;
    auto whole = server.transmit_file(f, 0, portico::to_end_of_file, {}, {}, {.bytes_per_call = 0});
    auto [sent, got] = co_await portico::when_all(std::move(whole), receive(client, 10'500));
    CHECK_FALSE(sent.error());
    CHECK(ctx.statistics().transmit_file_calls - calls_before == 1);
    CHECK(got == content(0, 10'500));

    const auto calls_between = ctx.statistics().transmit_file_calls;
    auto parts = server.transmit_file(f, 0, portico::to_end_of_file, {}, {},
                                      {.bytes_per_call = 4096, .call_timeout = std::chrono::seconds(30)});
    auto [sent_in_parts, got_in_parts] = co_await portico::when_all(std::move(parts), receive(client, 10'500));
    CHECK_FALSE(sent_in_parts.error());
    CHECK(sent_in_parts.value_unchecked() == 10'500);
    CHECK(ctx.statistics().transmit_file_calls - calls_between == 3);
    CHECK(got_in_parts == content(0, 10'500));
}

PORTICO_IO_TEST_CASE("transmit_file with a call_timeout ends with timed_out when the peer stops reading; the bytes "
                     "say how much went",
                     "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    // Far more than the connection's buffers hold: the peer never reads, so
    // a call comes to wait for it.
    constexpr std::uint64_t size = 32u << 20;
    random_access_file f = co_await file_of(ctx, path, size);
    const auto calls_before = ctx.statistics().transmit_file_calls;
    auto [ec, sent] =
        co_await server.transmit_file(f, 0, portico::to_end_of_file, {}, {},
                                      {.bytes_per_call = 1u << 20, .call_timeout = std::chrono::milliseconds(300)});
    const auto calls = ctx.statistics().transmit_file_calls - calls_before;
    INFO(sent << " bytes sent in " << calls << " calls");
    CHECK(ec == errc::timed_out);
    CHECK(sent < size);
    // Every call before the one that timed out sent its whole part.
    CHECK(sent >= (calls - 1) * (1u << 20));
    CHECK(calls < size / (1u << 20));
    client.close();
}

PORTICO_IO_TEST_CASE("transmit_file reads offsets above 4 GiB of a sparse file", "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path(L"sparse");
    portico::test::make_sparse(path.path());
    random_access_file f(ctx);
    REQUIRE_FALSE(f.open(path.path(), file_access::read_write).error());
    constexpr std::uint64_t at = (std::uint64_t{1} << 32) * 5 + 777;
    const auto data = content(at, 50'000);
    REQUIRE_FALSE((co_await f.write_all_at(at, buffer(data))).error());
    // From 1,000 bytes before the data (a hole: zeros) to the end.
    auto [sent, got] = co_await portico::when_all(server.transmit_file(f, at - 1000, portico::to_end_of_file),
                                                  receive(client, 51'000));
    CHECK_FALSE(sent.error());
    CHECK(sent.value_unchecked() == 51'000);
    REQUIRE(got.size() == 51'000);
    CHECK(std::vector<char>(got.begin(), got.begin() + 1000) == std::vector<char>(1000, '\0'));
    CHECK(std::vector<char>(got.begin() + 1000, got.end()) == data);
}

PORTICO_IO_TEST_CASE("transmit_file to a peer that resets in the middle reports the error; nothing leaks",
                     "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    constexpr std::size_t size = 64 * 1024 * 1024;
    random_access_file f = co_await file_of(ctx, path, size);
    auto resetter = [](tcp_socket& s) -> task<> {
        // Some bytes arrive, then the peer resets.
        std::vector<char> some(64 * 1024);
        (void)co_await s.read_all(buffer(some));
        s.close_abortive();
    };
    auto [sent, ignored] = co_await portico::when_all(server.transmit_file(f, 0, size), resetter(client));
    (void)ignored;
    INFO("error: " << sent.error().message() << ", " << sent.value_unchecked() << " bytes");
    const bool peer_gone = sent.error() == errc::connection_reset || sent.error() == errc::connection_aborted;
    CHECK(peer_gone);
    CHECK(sent.value_unchecked() < size);
    // The socket's and the file's handles close; the baseline check of every
    // test then finds no handle and no frame left.
}

PORTICO_IO_TEST_CASE("a stop request cancels a transmit_file the peer does not read", "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    constexpr std::size_t size = 64 * 1024 * 1024; // far beyond both sockets' buffers
    random_access_file f = co_await file_of(ctx, path, size);
    auto [ec, n] = co_await portico::with_timeout(ctx, 100ms, server.transmit_file(f, 0, size));
    CHECK(ec == errc::timed_out);
    CHECK(n < size);

    // A closed socket or file aborts at once.
    random_access_file closed_file(ctx);
    auto [no_file, no_file_n] = co_await client.transmit_file(closed_file, 0, 1);
    CHECK(no_file == errc::operation_aborted);
    CHECK(no_file_n == 0);
    server.close();
    auto [no_socket, no_socket_n] = co_await server.transmit_file(f, 0, 1);
    CHECK(no_socket == errc::operation_aborted);
    CHECK(no_socket_n == 0);
    // A head of 4 GiB is refused before anything is looked at.
    static const char byte = 0;
    auto [too_big, too_big_n] =
        co_await client.transmit_file(f, 0, 0, portico::const_buffer(&byte, std::size_t{1} << 32));
    CHECK(too_big == errc::invalid_argument);
    CHECK(too_big_n == 0);
}

#if PORTICO_BACKEND_URING
// Linux only for now: not yet run under Wine, whose TransmitFile copies the
// file in the calling thread's APCs (docs/design/files.md).
PORTICO_IO_TEST_CASE("closing the socket in the middle of a transmit_file ends it with operation_aborted",
                     "[tcp_transmit_file]")
{
    // NOTE: with one pool thread only. transmit_file() starts one call
    // after another, and tcp_socket's contract has a close() from another
    // thread race with those starts (end it through its stop token, then
    // close: "a stop request cancels..." above). With one thread the close
    // and the starts take turns on it.
    if (threads != 1) co_return;
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    constexpr std::size_t size = 64 * 1024 * 1024; // far beyond both sockets' buffers
    random_access_file f = co_await file_of(ctx, path, size);
    const auto sends_before = ctx.statistics().send_calls;
    auto closer = [](io_context& c, tcp_socket& s, std::uint64_t before) -> task<> {
        // Once the transfer has sent something (a bounded wait: 10 s),
        // close the socket under it: the peer reads nothing and the file is
        // far larger than both sockets' buffers, so from the first send on
        // the transfer cannot finish, and a send is pending or about to be.
        for (int i = 0; i < 1000 && c.statistics().send_calls == before; ++i) co_await c.sleep_for(10ms);
        s.close();
    };
    auto [sent, ignored] =
        co_await portico::when_all(server.transmit_file(f, 0, size), closer(ctx, server, sends_before));
    (void)ignored;
    INFO("error: " << sent.error().message() << ", " << sent.value_unchecked() << " bytes");
    CHECK(sent.error() == errc::operation_aborted);
    CHECK(sent.value_unchecked() < size);
    client.close();
}
#endif

PORTICO_IO_TEST_CASE("100 concurrent downloads of one file arrive byte for byte", "[tcp_transmit_file]")
{
    temp_file path;
    constexpr std::size_t size = 512 * 1024;
    random_access_file f = co_await file_of(ctx, path, size);
    const auto expected = content(0, size);
    constexpr int downloads = 100;
    std::vector<std::unique_ptr<tcp_socket>> servers, clients;
    for (int i = 0; i < downloads; ++i) {
        auto [client, server] = co_await connected_pair(ctx);
        clients.push_back(std::make_unique<tcp_socket>(std::move(client)));
        servers.push_back(std::make_unique<tcp_socket>(std::move(server)));
    }
    int bad = 0;
    {
        portico::task_group group;
        for (int i = 0; i < downloads; ++i) {
            // Each with its own head, so a mix-up between connections shows.
            group.spawn([](tcp_socket& s, random_access_file& file, int id, int& failures) -> task<> {
                const std::string head = "download " + std::to_string(id) + "\n";
                auto [ec, n] = co_await s.transmit_file(file, 0, portico::to_end_of_file, buffer(head));
                if (ec || n != head.size() + size) ++failures;
            }(*servers[i], f, i, bad));
            group.spawn([](tcp_socket& s, int id, const std::vector<char>& want, int& failures) -> task<> {
                const std::string head = "download " + std::to_string(id) + "\n";
                auto got = co_await receive(s, head.size() + size);
                if (got != joined(head, want, "")) ++failures;
            }(*clients[i], i, expected, bad));
        }
        co_await group.join();
    }
    CHECK(bad == 0);
}

PORTICO_IO_TEST_CASE("steady-state transmit_file makes no heap allocation", "[tcp_transmit_file]")
{
    auto [client, server] = co_await connected_pair(ctx);
    temp_file path;
    random_access_file f = co_await file_of(ctx, path, 4096);
    const std::string head = "HDR!";
    std::optional<std::uint64_t> before;
    std::optional<std::uint64_t> after;
    int failures = 0;
    auto sender = [&]() -> task<> {
        for (int i = 0; i < 1200; ++i) {
            if (i == 200) before = portico::test::allocations_now();
            auto [ec, n] =
                co_await server.transmit_file(f, static_cast<std::uint64_t>(i % 16) * 256, 256, buffer(head));
            if (ec || n != 260) ++failures;
        }
        after = portico::test::allocations_now();
        (void)server.shutdown_send();
    };
    auto drain = [&]() -> task<> {
        std::array<char, 4096> sink;
        std::size_t total = 0;
        for (;;) {
            auto [ec, n] = co_await client.read_some(buffer(sink));
            if (ec) break;
            total += n;
        }
        if (total != 1200 * 260) ++failures;
    };
    co_await portico::when_all(sender(), drain());
    CHECK(failures == 0);
    if (before && after) {
        CHECK(*after - *before <= portico::test::cache_growth_allowance); // over 1,000 transmits
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
}
