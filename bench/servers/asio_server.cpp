// The standalone Asio benchmark server (bench/PROTOCOL.md): echo, packet, sink,
// fan-out, download and the lean modes written the way an Asio user writes them with
// C++20 coroutines — one io_context, one coroutine per connection, as_tuple completions
// so errors are values on the hot path, and nothing tuned beyond that.

#include "harness.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#if defined(_WIN32)
#include <asio/windows/random_access_handle.hpp>
#endif
#include <asio/read.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

namespace {

using asio::ip::tcp;

// One source, two natives: built with ASIO_HAS_IO_URING (and no epoll) it is bench_asio_uring,
// and its stats line says so.
#if defined(ASIO_HAS_IO_URING_AS_DEFAULT)
constexpr const char* impl_name = "asio_uring";
#else
constexpr const char* impl_name = "asio";
#endif

// Asio 1.22 still has as_tuple under experimental; completions become (error_code, ...)
// tuples instead of exceptions.
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// Keeps `open` right however the connection ends, including its coroutine frame being
// destroyed by the io_context at shutdown.
class open_connection {
public:
    explicit open_connection(bench::counters& c) : counters_(c)
    {
        counters_.open.fetch_add(1, std::memory_order_relaxed);
    }
    open_connection(const open_connection&) = delete;
    open_connection& operator=(const open_connection&) = delete;
    ~open_connection() { bench::connection_closed(counters_); }

private:
    bench::counters& counters_;
};

asio::awaitable<void> echo(tcp::socket socket, std::vector<std::byte> buffer)
{
    for (;;) {
        const auto [read_error, n] = co_await socket.async_read_some(asio::buffer(buffer), use_nothrow);
        if (read_error) co_return;
        const auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(buffer, n), use_nothrow);
        if (write_error) co_return;
    }
}

asio::awaitable<void> packet(tcp::socket socket, std::vector<std::byte> buffer)
{
    std::array<std::uint8_t, bench::packet_header_size> header{};
    for (;;) {
        const auto [header_error, header_bytes] = co_await asio::async_read(socket, asio::buffer(header), use_nothrow);
        if (header_error) co_return;
        // Little-endian u16 size of the whole packet, header included.
        const std::size_t size = header[0] | (static_cast<std::size_t>(header[1]) << 8);
        if (size < bench::packet_header_size) co_return;
        const auto body = asio::buffer(buffer, size - bench::packet_header_size);
        const auto [body_error, body_bytes] = co_await asio::async_read(socket, body, use_nothrow);
        if (body_error) co_return;
        // One gather write: header and body go out in a single send.
        const std::array<asio::const_buffer, 2> whole{asio::buffer(header), body};
        const auto [write_error, written] = co_await asio::async_write(socket, whole, use_nothrow);
        if (write_error) co_return;
    }
}

// echo-lean: waits for data without a buffer (async_wait(wait_read), which Asio
// makes a zero-byte WSARecv on a stream socket under IOCP), then reads what has
// arrived, without blocking, into a buffer borrowed from the process's pool, and
// gives it back once the echo is sent: Asio's reactor-style operations.
asio::awaitable<void> echo_lean(tcp::socket socket)
{
    asio::error_code error;
    socket.non_blocking(true, error);
    if (error) co_return;
    for (;;) {
        const auto [wait_error] = co_await socket.async_wait(tcp::socket::wait_read, use_nothrow);
        if (wait_error) co_return;
        const bench::pooled_buffer buffer;
        const std::size_t n = socket.read_some(asio::buffer(buffer.data(), buffer.size()), error);
        if (error == asio::error::would_block) continue;
        if (error) co_return; // eof included
        const auto [write_error, written] =
            co_await asio::async_write(socket, asio::buffer(buffer.data(), n), use_nothrow);
        if (write_error) co_return;
    }
}

// packet-lean: `packet` with the body read into a buffer borrowed from the process's
// pool once its header is in, given back once the packet is sent back; the 4-byte
// header is read into the coroutine's frame, so a silent connection holds no buffer.
asio::awaitable<void> packet_lean(tcp::socket socket)
{
    std::array<std::uint8_t, bench::packet_header_size> header{};
    for (;;) {
        const auto [header_error, header_bytes] = co_await asio::async_read(socket, asio::buffer(header), use_nothrow);
        if (header_error) co_return;
        // Little-endian u16 size of the whole packet, header included.
        const std::size_t size = header[0] | (static_cast<std::size_t>(header[1]) << 8);
        if (size < bench::packet_header_size) co_return;
        const bench::pooled_buffer buffer;
        const auto body = asio::buffer(buffer.data(), size - bench::packet_header_size);
        const auto [body_error, body_bytes] = co_await asio::async_read(socket, body, use_nothrow);
        if (body_error) co_return;
        const std::array<asio::const_buffer, 2> whole{asio::buffer(header), body};
        const auto [write_error, written] = co_await asio::async_write(socket, whole, use_nothrow);
        if (write_error) co_return;
    }
}

asio::awaitable<void> sink(tcp::socket socket, std::vector<std::byte> buffer)
{
    for (;;) {
        const auto [read_error, n] = co_await socket.async_read_some(asio::buffer(buffer), use_nothrow);
        if (read_error) co_return;
    }
}

// fanout: each member has a queue of shared, immutable messages (encoded once) and at
// most one async_write in flight, which takes everything queued (up to 64 messages) in
// one gathered write; its completion starts the next. This is the write chain of
// Asio's chat server example, with a plain completion handler: the C++20 example's
// writer coroutine parked on a timer costs a posted wake-up (PostQueuedCompletionStatus
// and a dequeue) per delivery to an idle member, and measured slower here.
using message = std::shared_ptr<const std::vector<std::byte>>;

class member : public std::enable_shared_from_this<member> {
public:
    explicit member(tcp::socket socket) : socket_(std::move(socket)) { buffers_.reserve(max_gather); }

    void deliver(const message& m)
    {
        queue_.push_back(m);
        if (!writing_) write();
    }

    void stop()
    {
        asio::error_code ignored;
        socket_.close(ignored);
    }

    tcp::socket& socket() { return socket_; }

private:
    static constexpr std::size_t max_gather = 64;

    void write()
    {
        writing_ = true;
        const std::size_t n = std::min(queue_.size(), max_gather);
        buffers_.clear();
        for (std::size_t i = 0; i < n; ++i) buffers_.push_back(asio::buffer(*queue_[i]));
        asio::async_write(socket_, buffers_, [self = shared_from_this(), n](asio::error_code error, std::size_t) {
            self->writing_ = false;
            if (error) {
                self->stop();
                return;
            }
            self->queue_.erase(self->queue_.begin(), self->queue_.begin() + static_cast<std::ptrdiff_t>(n));
            if (!self->queue_.empty()) self->write();
        });
    }

    tcp::socket socket_;
    std::deque<message> queue_;
    std::vector<asio::const_buffer> buffers_; // the gathered write's, reused
    bool writing_ = false;
};

// Every member runs on the room's executor, so the room and the members' queues need
// no lock: the io_context itself with one thread, a strand over it with more.
class room {
public:
    explicit room(asio::any_io_executor executor) : executor_(std::move(executor)) {}

    const asio::any_io_executor& executor() const { return executor_; }

    void enter(const std::shared_ptr<member>& m) { members_.push_back(m); }
    void leave(const member& m)
    {
        std::erase_if(members_, [&m](const auto& other) { return other.get() == &m; });
    }

    void broadcast(const member& from, const message& m)
    {
        for (const auto& other : members_) {
            if (other.get() != &from) other->deliver(m);
        }
    }

private:
    asio::any_io_executor executor_;
    std::vector<std::shared_ptr<member>> members_;
};

// Reads what has arrived and broadcasts every whole packet in it, as portico's
// read_packet() does from its receive ring: one receive for a burst of packets.
// NOTE: reading the header and then the body, as `packet` does, takes two receives
// per packet, and their completions queue behind the completions of the previous
// packet's writes, so no write ever finds a second message to gather: that way
// measured 7 to 12 times slower than this one (docs/benchmarks.md).
asio::awaitable<void> fanout(tcp::socket socket, room& r)
{
    const auto self = std::make_shared<member>(std::move(socket));
    r.enter(self);
    // Room for a 64 KiB receive behind an incomplete packet (less than 64 KiB).
    std::vector<std::uint8_t> buffer(2 * bench::receive_buffer_size);
    std::size_t filled = 0;
    for (bool open = true; open;) {
        const auto room_left = asio::buffer(buffer.data() + filled, buffer.size() - filled);
        const auto [error, n] = co_await self->socket().async_read_some(room_left, use_nothrow);
        if (error) break;
        filled += n;
        std::size_t used = 0;
        while (filled - used >= bench::packet_header_size) {
            // Little-endian u16 size of the whole packet, header included.
            const std::size_t size = buffer[used] | (static_cast<std::size_t>(buffer[used + 1]) << 8);
            if (size < bench::packet_header_size) {
                open = false;
                break;
            }
            if (filled - used < size) break;
            // Encoded once: one copy, into the message every member shares.
            auto m = std::make_shared<std::vector<std::byte>>(size);
            std::memcpy(m->data(), buffer.data() + used, size);
            r.broadcast(*self, std::move(m));
            used += size;
        }
        std::memmove(buffer.data(), buffer.data() + used, filled - used);
        filled -= used;
    }
    r.leave(*self);
    self->stop();
}

#if defined(_WIN32)
// download: each "GET " asks for the file, read with a random-access handle
// (overlapped ReadFile on the io_context's completion port) a 64 KiB block at a
// time, each block written whole before the next is read; the file is opened per
// request, as a file server would. The handle is opened here rather than by
// asio::random_access_file, which opens files without sharing (Asio 1.22), so a
// second connection could not open the file while the first sends it.
// A connection that starts with anything else is echoed (the latency probe run
// beside the downloads).
asio::awaitable<void> download(tcp::socket socket, std::vector<std::byte> buffer, const char* file)
{
    std::array<char, 4> request;
    const auto [first_error, first] = co_await asio::async_read(socket, asio::buffer(request), use_nothrow);
    if (first_error) co_return;
    if (std::memcmp(request.data(), bench::download_request, request.size()) != 0) {
        const auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(request), use_nothrow);
        if (write_error) co_return;
        co_await echo(std::move(socket), std::move(buffer));
        co_return;
    }
    for (;;) {
        HANDLE h = ::CreateFileA(file, GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                                 FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OVERLAPPED, nullptr);
        if (h == INVALID_HANDLE_VALUE) co_return;
        asio::windows::random_access_handle f(socket.get_executor(), h);
        std::uint64_t offset = 0;
        for (;;) {
            const auto [read_error, n] = co_await f.async_read_some_at(
                offset, asio::buffer(buffer.data(), std::min(buffer.size(), bench::file_block_size)), use_nothrow);
            if (read_error == asio::error::eof) break;
            if (read_error) co_return;
            const auto [write_error, written] =
                co_await asio::async_write(socket, asio::buffer(buffer.data(), n), use_nothrow);
            if (write_error) co_return;
            offset += n;
        }
        f.close();
        const auto [next_error, next] = co_await asio::async_read(socket, asio::buffer(request), use_nothrow);
        if (next_error) co_return;
    }
}
#endif

asio::awaitable<void> serve(tcp::socket socket, const bench::options& opts, bench::counters& counters, room& r)
{
    const bench::mode mode = opts.mode;
    const open_connection guard(counters);
    switch (mode) {
    case bench::mode::fanout: co_await fanout(std::move(socket), r); co_return;
    case bench::mode::echo_lean: co_await echo_lean(std::move(socket)); co_return;
    case bench::mode::packet_lean: co_await packet_lean(std::move(socket)); co_return;
    default: break;
    }
    // The connection's one 64 KiB buffer, allocated once per connection.
    std::vector<std::byte> buffer(bench::receive_buffer_size);
    switch (mode) {
    case bench::mode::echo: co_await echo(std::move(socket), std::move(buffer)); break;
    case bench::mode::packet: co_await packet(std::move(socket), std::move(buffer)); break;
    case bench::mode::sink: co_await sink(std::move(socket), std::move(buffer)); break;
    case bench::mode::download:
#if defined(_WIN32)
        co_await download(std::move(socket), std::move(buffer), opts.file);
#endif
        break;
    case bench::mode::fanout:
    case bench::mode::echo_lean:
    case bench::mode::packet_lean: break;
    }
}

asio::awaitable<void> accept_loop(tcp::acceptor acceptor, const bench::options& opts, bench::counters& counters,
                                  room& r)
{
    const bench::mode mode = opts.mode;
    // A fan-out member's socket and coroutine run on the room's executor, so that its
    // write completions run there too.
    const asio::any_io_executor sessions = mode == bench::mode::fanout ? r.executor() : acceptor.get_executor();
    for (;;) {
        auto [error, socket] = co_await acceptor.async_accept(sessions, use_nothrow);
        if (error == asio::error::operation_aborted) co_return;
        // NOTE: a client that gave up before we accepted it is not a reason to stop
        // listening; anything else (out of sockets, say) is, and is worth saying.
        if (error == asio::error::connection_aborted || error == asio::error::connection_reset) continue;
        if (error) {
            std::fprintf(stderr, "asio_server: accept failed: %s\n", error.message().c_str());
            co_return;
        }
        counters.accepted.fetch_add(1, std::memory_order_relaxed);
        asio::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        asio::co_spawn(sessions, serve(std::move(socket), opts, counters, r), asio::detached);
    }
}

// A pool thread's loop under --idle-spin, the way an Asio user busy-polls for latency: with
// nothing ready, the thread keeps polling (poll runs what is ready and never blocks) for up to
// `spin` before it blocks in run_one for the next handler.
void run_spinning(asio::io_context& ctx, std::chrono::microseconds spin)
{
    while (!ctx.stopped()) {
        if (ctx.poll() != 0) continue;
        const auto until = std::chrono::steady_clock::now() + spin;
        bool found = false;
        while (!found && !ctx.stopped() && std::chrono::steady_clock::now() < until) found = ctx.poll() != 0;
        if (!found) ctx.run_one();
    }
}

} // namespace

int main(int argc, char** argv)
{
    bench::start_counting();
    const bench::options opts = bench::parse_options(argc, argv);
    bench::refuse_scheduling_knobs(opts, impl_name, /*spins_when_idle=*/true);
#if !defined(_WIN32)
    // NOTE: refused, not ignored: download is written on asio::windows::random_access_handle.
    if (opts.mode == bench::mode::download) {
        std::fprintf(stderr, "bench_%s: --mode download is not implemented natively (it uses a Windows file handle)\n",
                     impl_name);
        return 2;
    }
#endif
    // Declared before the io_context: the connection coroutines it destroys at shutdown
    // still update these.
    bench::counters counters;
    try {
        asio::io_context ctx(static_cast<int>(opts.threads));
        tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::address_v4::loopback(), opts.port));
        bench::print_listening(acceptor.local_endpoint().port());
        // Declared after the io_context, so its members' sockets go first.
        room fanout_room(opts.threads == 1 ? asio::any_io_executor(ctx.get_executor())
                                           : asio::any_io_executor(asio::make_strand(ctx)));
        asio::co_spawn(ctx, accept_loop(std::move(acceptor), opts, counters, fanout_room), asio::detached);

        std::vector<std::thread> threads;
        const std::chrono::microseconds spin(opts.idle_spin_us.value_or(0));
        for (unsigned i = 0; i < opts.threads; ++i) {
            threads.emplace_back([&ctx, spin] {
                if (spin.count() == 0) {
                    ctx.run();
                } else {
                    run_spinning(ctx, spin);
                }
            });
        }
        bench::run_control(impl_name, opts, counters);

        ctx.stop();
        for (auto& t : threads) t.join();
        // NOTE: leaving this scope destroys the io_context. Its socket service closes the
        // acceptor and every connection first, then it drains the aborted operations and
        // destroys the suspended coroutines (and their sockets) without resuming them.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asio_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
