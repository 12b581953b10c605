#include "harness.hpp"

#include <portico/portico.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

using portico::buffer;
using portico::io_context;
using portico::packet_stream;
using portico::shared_packet;
using portico::task;
using portico::tcp_socket;

// Counts the connection as open for as long as the session lives.
struct open_connection {
    explicit open_connection(bench::counters& c) : counters(c)
    {
        ++counters.accepted;
        ++counters.open;
    }
    ~open_connection() { bench::connection_closed(counters); }
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

// echo-lean: holds no buffer while the peer is silent (wait_readable: a
// zero-byte receive, which takes nothing); borrows one from the process's pool
// when data has arrived, and gives it back once the echo is sent.
task<> echo_lean(tcp_socket s)
{
    for (;;) {
        if (auto [ec] = co_await s.wait_readable(); ec) co_return;
        const bench::pooled_buffer data;
        auto [ec, n] = co_await s.read_some(buffer(data.data(), data.size()));
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
// before the one write that carries all the answers (queue_packet). A peer
// that sends faster than it reads fills the queue: over its high watermark a
// copy cannot wait, so the answer goes as a write_packet, which waits for room
// (the suspend policy) behind the copies queued before it, and the next packet
// is read only then. Every packet is answered (bench/PROTOCOL.md).
task<> packet_echo(tcp_socket s)
{
    portico::packet_stream ps{std::move(s), portico::packet_stream_options{
                                                .receive_buffer = bench::receive_buffer_size,
                                            }};
    for (;;) {
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec) co_return;
        const std::error_code queued = ps.queue_packet(pkt.type, pkt.body);
        if (!queued) continue;
        if (queued != portico::errc::send_queue_full) co_return;
        auto [write_ec] = co_await ps.write_packet(pkt.type, pkt.body);
        if (write_ec) co_return;
    }
}

// The fan-out room: every connection's stream. Broadcasts read the member
// list without holding the lock while they queue: the list is replaced, not
// changed, when a member enters or leaves (rare), so a broadcast takes the
// current list with one reference count and allocates nothing.
class room {
public:
    using member = std::shared_ptr<packet_stream<tcp_socket>>;

    void enter(const member& m)
    {
        const std::lock_guard lock(mutex_);
        auto next = std::make_shared<std::vector<member>>(*members_);
        next->push_back(m);
        members_ = std::move(next);
    }

    void leave(const packet_stream<tcp_socket>& m)
    {
        const std::lock_guard lock(mutex_);
        auto next = std::make_shared<std::vector<member>>(*members_);
        std::erase_if(*next, [&m](const member& other) { return other.get() == &m; });
        members_ = std::move(next);
    }

    // Encodes the packet once and queues the same bytes on every other
    // member's stream, without waiting for any of them.
    void broadcast(const packet_stream<tcp_socket>& from, const portico::packet& pkt)
    {
        auto [ec, shared] = shared_packet::make(from.format(), pkt.type, pkt.body);
        if (ec) return;
        std::shared_ptr<const std::vector<member>> everyone;
        {
            const std::lock_guard lock(mutex_);
            everyone = members_;
        }
        for (const member& m : *everyone) {
            // A member whose queue is full is closed by its policy; its own
            // session then leaves the room.
            if (m.get() != &from) (void)m->queue_packet(shared);
        }
    }

private:
    std::mutex mutex_;
    std::shared_ptr<const std::vector<member>> members_ = std::make_shared<const std::vector<member>>();
};

task<> fanout(tcp_socket s, room& r)
{
    auto self = std::make_shared<packet_stream<tcp_socket>>(
        std::move(s), portico::packet_stream_options{
                          .receive_buffer = bench::receive_buffer_size,
                          // A receiver that stops reading is cut off, not waited for.
                          .send = {.policy = portico::overflow_policy::disconnect},
                      });
    r.enter(self);
    for (;;) {
        auto [ec, pkt] = co_await self->read_packet();
        if (ec) break;
        r.broadcast(*self, pkt);
    }
    r.leave(*self);
}

#if PORTICO_BACKEND_IOCP
// download: each "GET " asks for the file, which goes out with one
// transmit_file (TransmitFile: on Windows the kernel sends it from the cache,
// with no copy through the process; Wine copies it on the calling thread, see
// docs/platform-notes.md); the file is opened per request, as a file server
// would.
// A connection that starts with anything else is echoed (the latency probe
// run beside the downloads).
task<> download(tcp_socket s, const std::filesystem::path& file, portico::transmit_file_options parts)
{
    std::array<char, 4> request;
    auto [first_ec, first] = co_await s.read_all(buffer(request));
    if (first_ec) co_return;
    if (std::memcmp(request.data(), bench::download_request, request.size()) != 0) {
        if (auto [ec, n] = co_await s.write_all(buffer(request)); ec) co_return;
        co_await echo(std::move(s));
        co_return;
    }
    for (;;) {
        portico::random_access_file f(s.context());
        if (auto [ec] = f.open(file, portico::file_access::read); ec) co_return;
        if (auto [ec, n] = co_await s.transmit_file(f, 0, portico::to_end_of_file, {}, {}, parts); ec) co_return;
        f.close();
        if (auto [ec, n] = co_await s.read_all(buffer(request)); ec) co_return;
    }
}
#endif

// `file`: download's, which only the IOCP build serves.
task<> session(tcp_socket s, const bench::options& opts, bench::counters& counters, room& r,
               [[maybe_unused]] const std::filesystem::path& file)
{
    const bench::mode mode = opts.mode;
    open_connection counted(counters);
    (void)s.set_no_delay(true);
    switch (mode) {
    case bench::mode::echo: co_await echo(std::move(s)); break;
    case bench::mode::echo_lean: co_await echo_lean(std::move(s)); break;
    // What an idle packet_stream holds is the library's to decide: the same
    // stream as `packet`, with the same 64 KiB receive buffer, which it gives
    // back while parked (packet_stream_options::park_after, 1 s by default).
    case bench::mode::packet:
    case bench::mode::packet_lean: co_await packet_echo(std::move(s)); break;
    case bench::mode::sink: co_await sink(std::move(s)); break;
    case bench::mode::fanout: co_await fanout(std::move(s), r); break;
    case bench::mode::download: {
#if PORTICO_BACKEND_IOCP
        portico::transmit_file_options parts;
        if (opts.transmit_part) parts.bytes_per_call = *opts.transmit_part;
        co_await download(std::move(s), file, parts);
#endif
        break;
    }
    }
}

task<> serve(io_context& ctx, portico::tcp_acceptor& acceptor, const bench::options& opts, bench::counters& counters)
{
    co_await ctx.schedule();
    room r;
    const std::filesystem::path file = opts.file != nullptr ? opts.file : "";
    portico::task_group sessions;
    for (;;) {
        auto [ec, s] = co_await acceptor.accept();
        if (ec) break; // the context was stopped: "quit"
        sessions.spawn(session(std::move(s), opts, counters, r, file));
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
#if PORTICO_BACKEND_URING
    // NOTE: refused, not ignored: a run that asks for these would otherwise measure something
    // other than what it names. The native download is not written yet: the io_uring backend's
    // transmit_file is new, and Asio's download, its peer, is written on a Windows file handle.
    // The IOCP scheduling knobs have no meaning on the rings (docs/design/uring.md).
    if (opts.mode == bench::mode::download) {
        std::fputs("bench_portico: --mode download is not implemented natively yet (no Asio peer to compare with)\n",
                   stderr);
        return 2;
    }
    if (opts.inline_budget || opts.skip_on_success || opts.port_check_interval || opts.transmit_part) {
        std::fputs("bench_portico: on io_uring only --batch and --idle-spin of the scheduling knobs have a meaning\n",
                   stderr);
        return 2;
    }
#endif

    io_context::options knobs;
    if (opts.inline_budget) knobs.inline_budget = *opts.inline_budget;
    if (opts.batch_size) knobs.batch_size = *opts.batch_size;
    if (opts.skip_on_success) knobs.skip_completion_on_success = *opts.skip_on_success;
    if (opts.port_check_interval) knobs.port_check_interval = *opts.port_check_interval;
    if (opts.idle_spin_us) knobs.idle_spin = std::chrono::microseconds(*opts.idle_spin_us);
    io_context ctx(knobs);
    portico::tcp_acceptor acceptor(ctx);
    if (auto [ec] = acceptor.listen(portico::endpoint{portico::address_v4::loopback(), opts.port}); ec) {
        std::fprintf(stderr, "bench_portico: cannot listen: %s\n", ec.message().c_str());
        return 1;
    }
    bench::print_listening(acceptor.local_endpoint().value().port());

    bench::counters counters;
    // The server runs on the pool until "quit" stops the context, which ends
    // the accept loop. NOTE: the control thread and the accept loop start
    // before the pool, and the main thread only waits once the pool runs: under
    // valgrind (bench/callgrind_echo.sh) a pool thread waiting in its ring
    // keeps every other thread from running, so nothing else may still have
    // work to do by then.
    std::thread control([&] {
        bench::run_control("portico", opts, counters);
        ctx.stop();
    });
    ctx.spawn(serve(ctx, acceptor, opts, counters));
    {
        portico::thread_pool pool(ctx, opts.threads);
        control.join();
    }
    return 0;
}
