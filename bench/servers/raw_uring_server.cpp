// bench_raw_uring: the native floor of bench/PROTOCOL.md. The echo, packet, sink, echo-lean and
// packet-lean modes of the other servers, written straight on io_uring with liburing and no
// library besides: one ring per thread, each with its own listener on the port (SO_REUSEPORT,
// so the kernel spreads connections over the threads) and one multishot accept; every request
// is queued on the thread's ring and the whole batch goes in with one io_uring_enter, which
// also waits for the next completions. The lean modes wait for data with a poll, the
// counterpart of the zero-byte WSARecv of bench_raw, and receive into a pooled buffer.
#include "harness.hpp"

#include <liburing.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace {

// What a completion is for: its user_data is a connection's address with the kind in the low
// bits (connections are aligned to 8), or the kind alone for the thread's own requests.
enum class op_kind : std::uintptr_t {
    accept = 0,  // the listener's multishot accept
    wait = 1,    // lean modes: a poll for POLLIN, which takes nothing from the socket
    receive = 2, // into the connection's buffer, after what packet mode keeps
    send = 3,    // [send_begin, send_end) of the buffer
    quit = 4,    // the read of the thread's eventfd: "quit" was given
    cancel = 5,  // the cancel of everything at shutdown
};
constexpr std::uintptr_t kind_mask = 7;

// One accepted connection. It has exactly one request in flight at any time (receive, then
// send everything, then receive again; sink only receives; the lean modes wait first), so its
// state needs no lock: only its thread touches it.
struct alignas(8) connection {
    explicit connection(int s) : fd(s) {}

    int fd;
    // packet: bytes of an incomplete packet kept at the front of `buffer`.
    std::size_t kept = 0;
    // The bytes [send_begin, send_end) of `buffer` still to be sent; after they are, packet
    // mode moves [send_end, received_end) to the front.
    std::size_t send_begin = 0;
    std::size_t send_end = 0;
    std::size_t received_end = 0;
    // packet: a header below the minimum size follows the packets being sent back; they go
    // first, then the connection ends.
    bool end_after_send = false;
    // receive_buffer_size bytes: the connection's own (connection_with_buffer), or one
    // borrowed from the pool while it has data to handle (the lean modes; null while it waits).
    std::byte* buffer = nullptr;
};

// A connection of the modes that are not lean: its buffer comes with it, in one allocation.
struct connection_with_buffer : connection {
    explicit connection_with_buffer(int s) : connection(s) { buffer = owned_buffer; }

    std::byte owned_buffer[bench::receive_buffer_size];
};

[[noreturn]] void fail(const char* what, int error)
{
    std::fprintf(stderr, "bench_raw_uring: %s failed: %s\n", what, std::strerror(error));
    std::exit(1);
}

// A listener on 127.0.0.1:port that shares its port with the other threads' listeners.
[[nodiscard]] int open_listener(std::uint16_t port)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket", errno);
    const int on = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) fail("SO_REUSEADDR", errno);
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) fail("SO_REUSEPORT", errno);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) fail("bind", errno);
    if (::listen(fd, SOMAXCONN) != 0) fail("listen", errno);
    return fd;
}

[[nodiscard]] std::uint16_t local_port(int fd)
{
    sockaddr_in address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) fail("getsockname", errno);
    return ntohs(address.sin_port);
}

// One thread's ring, listener and connections.
class worker {
public:
    static constexpr unsigned ring_entries = 1024;

    worker(const bench::options& opts, bench::counters& counters, int listener)
        : options_(opts), counters_(counters), idle_spin_(opts.idle_spin_us.value_or(0)), listener_(listener),
          quit_fd_(::eventfd(0, EFD_CLOEXEC))
    {
        if (quit_fd_ < 0) fail("eventfd", errno);
        // The same setup flags as portico's rings (cooperative task running): a floor
        // that lacks them is no floor.
        io_uring_params params{};
        params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
        if (const int error = io_uring_queue_init_params(ring_entries, &ring_, &params); error < 0)
            fail("io_uring_queue_init_params", -error);
    }
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;
    ~worker()
    {
        io_uring_queue_exit(&ring_);
        ::close(quit_fd_);
        ::close(listener_);
    }

    // Serves until quit() and then until every connection and request is gone.
    void run();
    // From another thread: ends run().
    void quit()
    {
        const std::uint64_t one = 1;
        if (::write(quit_fd_, &one, sizeof one) != sizeof one) fail("write to the eventfd", errno);
    }

private:
    void submit_and_wait();
    [[nodiscard]] io_uring_sqe* next_sqe();
    void submit(io_uring_sqe* sqe, std::uintptr_t user_data);
    void arm_accept();
    void on_accepted(int fd);
    void on_completion(const io_uring_cqe& cqe);
    void advance(connection& c, op_kind done, int result);
    void prepare_send_after_receive(connection& c, std::size_t bytes);
    void after_send(connection& c);
    void issue(connection& c, op_kind kind);
    void end(connection& c);

    const bench::options& options_;
    bench::counters& counters_;
    const std::chrono::microseconds idle_spin_;
    int listener_;
    int quit_fd_;
    std::uint64_t quit_value_ = 0; // the eventfd read's target
    io_uring ring_{};
    bool stopping_ = false;
    // Requests whose last completion has not come: run() ends when this and the connections
    // are zero after quit.
    std::size_t in_flight_ = 0;
    std::size_t connections_ = 0;
};

io_uring_sqe* worker::next_sqe()
{
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
        // The submission queue is full (a burst of accepts): hand it to the kernel now.
        if (const int error = io_uring_submit(&ring_); error < 0 && error != -EINTR) fail("io_uring_submit", -error);
        sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
}

void worker::submit(io_uring_sqe* sqe, std::uintptr_t user_data)
{
    io_uring_sqe_set_data64(sqe, user_data);
    ++in_flight_;
}

void worker::arm_accept()
{
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_multishot_accept(sqe, listener_, nullptr, nullptr, SOCK_CLOEXEC);
    submit(sqe, static_cast<std::uintptr_t>(op_kind::accept));
}

void worker::run()
{
    arm_accept();
    io_uring_sqe* quit_read = next_sqe();
    io_uring_prep_read(quit_read, quit_fd_, &quit_value_, sizeof quit_value_, 0);
    submit(quit_read, static_cast<std::uintptr_t>(op_kind::quit));
    while (!stopping_ || in_flight_ != 0 || connections_ != 0) {
        submit_and_wait();
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring_, head, cqe)
        {
            on_completion(*cqe);
            ++seen;
        }
        io_uring_cq_advance(&ring_, seen);
    }
}

void worker::submit_and_wait()
{
    if (idle_spin_.count() != 0) {
        // --idle-spin, as portico's: what the last turn queued goes in, then the thread looks at
        // the completion queue, and at the kernel's flag for completions it holds as task work,
        // with no system call, until something is there or the spin runs out.
        if (const int error = io_uring_submit(&ring_); error < 0 && error != -EINTR) fail("io_uring_submit", -error);
        const auto until = std::chrono::steady_clock::now() + idle_spin_;
        for (unsigned looks = 1;; ++looks) {
            if (io_uring_cq_ready(&ring_) != 0) return;
            if ((__atomic_load_n(ring_.sq.kflags, __ATOMIC_RELAXED) & IORING_SQ_TASKRUN) != 0) break;
            if (looks % 16 == 0 && std::chrono::steady_clock::now() >= until) break;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
    // NOTE: one system call per turn: what the last turn queued goes in, and the thread
    // sleeps until at least one completion is there (it runs the task work first).
    if (const int error = io_uring_submit_and_wait(&ring_, 1); error < 0 && error != -EINTR) {
        fail("io_uring_submit_and_wait", -error);
    }
}

void worker::on_completion(const io_uring_cqe& cqe)
{
    const std::uintptr_t data = io_uring_cqe_get_data64(&cqe);
    const auto kind = static_cast<op_kind>(data & kind_mask);
    // A multishot accept goes on (and stays in flight) while the kernel says MORE.
    if (kind != op_kind::accept || (cqe.flags & IORING_CQE_F_MORE) == 0) --in_flight_;
    switch (kind) {
    case op_kind::accept:
        if (cqe.res >= 0) on_accepted(cqe.res);
        // NOTE: a client that gave up before the accept is no reason to stop listening; the
        // kernel ends a multishot accept on some errors, so it is armed again.
        if ((cqe.flags & IORING_CQE_F_MORE) == 0 && !stopping_) arm_accept();
        return;
    case op_kind::quit: {
        stopping_ = true;
        // Everything on this ring ends: the accept, and each connection's one request, which
        // then ends its connection (advance() sees stopping_).
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        submit(sqe, static_cast<std::uintptr_t>(op_kind::cancel));
        return;
    }
    case op_kind::cancel: return;
    case op_kind::wait:
    case op_kind::receive:
    case op_kind::send: advance(*reinterpret_cast<connection*>(data & ~kind_mask), kind, cqe.res); return;
    }
}

void worker::on_accepted(int fd)
{
    if (stopping_) {
        ::close(fd);
        return;
    }
    const int on = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) {
        ::close(fd);
        return;
    }
    connection* c = bench::is_lean(options_.mode) ? new connection(fd) : new connection_with_buffer(fd);
    ++connections_;
    counters_.accepted.fetch_add(1, std::memory_order_relaxed);
    counters_.open.fetch_add(1, std::memory_order_relaxed);
    issue(*c, bench::is_lean(options_.mode) ? op_kind::wait : op_kind::receive);
}

// Handles the completion of the connection's request `done` and queues its next one, or ends it.
void worker::advance(connection& c, op_kind done, int result)
{
    if (stopping_ || result < 0) {
        end(c);
        return;
    }
    if (done == op_kind::wait) {
        // Data (or the end of the stream) has arrived: now the connection needs a buffer.
        if (c.buffer == nullptr) c.buffer = bench::receive_pool().borrow();
        issue(c, op_kind::receive);
        return;
    }
    if (done == op_kind::receive) {
        if (result == 0) { // the peer closed its side
            end(c);
            return;
        }
        if (options_.mode == bench::mode::sink) {
            issue(c, op_kind::receive);
            return;
        }
        prepare_send_after_receive(c, static_cast<std::size_t>(result));
    } else {
        c.send_begin += static_cast<std::size_t>(result);
    }
    // A short send: the rest goes next.
    if (c.send_begin != c.send_end) {
        issue(c, op_kind::send);
        return;
    }
    after_send(c);
}

// After a receive of `bytes`: sets [send_begin, send_end) to what goes back.
void worker::prepare_send_after_receive(connection& c, std::size_t bytes)
{
    c.send_begin = 0;
    if (options_.mode == bench::mode::echo || options_.mode == bench::mode::echo_lean) {
        c.send_end = bytes;
        return;
    }
    c.received_end = c.kept + bytes;
    const bench::packet_scan scan =
        bench::scan_packets(reinterpret_cast<const unsigned char*>(c.buffer), c.received_end);
    c.end_after_send = scan.malformed;
    c.send_end = scan.whole;
}

// Everything received so far has been answered: keep a partial packet, then receive or wait.
void worker::after_send(connection& c)
{
    const bool framed = options_.mode == bench::mode::packet || options_.mode == bench::mode::packet_lean;
    if (framed) {
        if (c.end_after_send) {
            end(c);
            return;
        }
        c.kept = c.received_end - c.send_end;
        if (c.send_end != 0) std::memmove(c.buffer, c.buffer + c.send_end, c.kept);
    }
    // Nothing kept: the buffer goes back and the connection waits without one. (A partial
    // packet keeps it, as a receive is then sure to follow.)
    if (bench::is_lean(options_.mode) && c.kept == 0) {
        bench::receive_pool().give_back(c.buffer);
        c.buffer = nullptr;
        issue(c, op_kind::wait);
        return;
    }
    issue(c, op_kind::receive);
}

void worker::issue(connection& c, op_kind kind)
{
    io_uring_sqe* sqe = next_sqe();
    switch (kind) {
    case op_kind::wait: io_uring_prep_poll_add(sqe, c.fd, POLLIN); break;
    // packet mode keeps an incomplete packet in front; it is always shorter than the buffer.
    case op_kind::receive:
        io_uring_prep_recv(sqe, c.fd, c.buffer + c.kept, bench::receive_buffer_size - c.kept, 0);
        break;
    case op_kind::send:
        io_uring_prep_send(sqe, c.fd, c.buffer + c.send_begin, c.send_end - c.send_begin, MSG_NOSIGNAL);
        break;
    case op_kind::accept:
    case op_kind::quit:
    case op_kind::cancel: std::abort();
    }
    submit(sqe, reinterpret_cast<std::uintptr_t>(&c) | static_cast<std::uintptr_t>(kind));
}

// The connection has no request in flight (its last one just completed): close and free it.
void worker::end(connection& c)
{
    ::close(c.fd);
    if (bench::is_lean(options_.mode)) {
        if (c.buffer != nullptr) bench::receive_pool().give_back(c.buffer);
        delete &c;
    } else {
        delete static_cast<connection_with_buffer*>(&c);
    }
    --connections_;
    bench::connection_closed(counters_);
}

} // namespace

int main(int argc, char** argv)
{
    bench::start_counting();
    const bench::options opts = bench::parse_options(argc, argv);
    bench::refuse_scheduling_knobs(opts, "raw_uring", /*spins_when_idle=*/true);
    // NOTE: the floor covers the modes without shared state, as bench_raw does; download
    // would need a file path (splice or reads and sends) of its own.
    if (opts.mode == bench::mode::fanout || opts.mode == bench::mode::download) {
        std::fputs("bench_raw_uring: --mode fanout and --mode download are not implemented\n", stderr);
        return 2;
    }
    bench::counters counters;
    std::vector<std::unique_ptr<worker>> workers;
    // The first listener picks the port (when --port is 0); the others share it.
    std::uint16_t port = opts.port;
    for (unsigned i = 0; i < opts.threads; ++i) {
        const int listener = open_listener(port);
        if (i == 0) port = local_port(listener);
        workers.push_back(std::make_unique<worker>(opts, counters, listener));
    }
    bench::print_listening(port);
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
    bench::run_control("raw_uring", opts, counters);
    for (auto& w : workers) w->quit();
    for (auto& t : threads) t.join();
    return 0;
}
