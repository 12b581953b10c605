// Ring-sharing benchmark for the io_uring backend: what docs/design/uring.md
// ("One ring, shared") bases its choice on.
//
// Ping-pong of 64-byte messages over TCP loopback pairs, every receive and
// send a request on portico's ring (detail/uring/ring.hpp), driven by T
// threads in two ways, in the same run:
//   shared      one ring; any thread takes any completion and submits the
//               next request (the backend's design: completions go to any
//               thread, as on a completion port);
//   per-thread  one ring per thread; pair k's requests all on ring k % T,
//               taken only by that ring's thread (no lock is contended, no
//               waiter woken for another's completion).
// Each configuration runs both ways in alternating order and prints round
// trips per second and the round trip's p50 and p99, then per-thread/shared
// ratios (> 1: per-thread faster, or slower in the tail). A second workload
// puts every active pair on one thread's ring (the imbalance a per-thread
// design must avoid by placing connections well), to show what the shared
// ring buys there. Linux only; a shared machine's absolute numbers vary:
// compare the ratios.
//   bench_uring_rings [seconds per run, default 2]

#include <portico/detail/uring/ring.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using portico::detail::uring::completion;
using portico::detail::uring::ring;

constexpr std::size_t message = 64;
constexpr std::uint64_t wake = ~std::uint64_t{0};

[[noreturn]] void fail(const char* what)
{
    std::fprintf(stderr, "bench_uring_rings: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

/// One connected loopback pair. The client sends a message, the server
/// echoes it, the client's receive of the echo ends a round trip. Each
/// side's fields are touched only by the handler of that side's previous
/// completion (the next request is submitted after the update), so any
/// thread may handle any completion.
struct pair_state {
    int client = -1;
    int server = -1;
    ring* on = nullptr;
    std::size_t server_got = 0;
    std::size_t client_got = 0;
    clock_type::time_point sent{};
    std::array<unsigned char, message> out{};
    std::array<unsigned char, message> server_buffer{};
    std::array<unsigned char, message> client_buffer{};
};

enum kind : std::uint64_t { client_send, server_recv, server_send, client_recv };

std::uint64_t tag(std::size_t pair, kind k) { return (static_cast<std::uint64_t>(pair) << 2) | k; }

void submit_or_die(ring& r, std::uint8_t opcode, int fd, void* data, std::size_t length, std::uint64_t user_data)
{
    const auto error = r.submit([&](io_uring_sqe& e) {
        e.opcode = opcode;
        e.fd = fd;
        e.addr = reinterpret_cast<std::uint64_t>(data);
        e.len = static_cast<std::uint32_t>(length);
        e.user_data = user_data;
    });
    if (error) {
        std::fprintf(stderr, "bench_uring_rings: submit: %s\n", error.message().c_str());
        std::exit(1);
    }
}

void make_pairs(std::vector<pair_state>& pairs)
{
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) fail("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("bind");
    if (::listen(listener, 1024) != 0) fail("listen");
    socklen_t length = sizeof a;
    if (::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &length) != 0) fail("getsockname");
    const int one = 1;
    for (auto& p : pairs) {
        p.client = ::socket(AF_INET, SOCK_STREAM, 0);
        if (p.client < 0) fail("socket");
        if (::connect(p.client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("connect");
        p.server = ::accept(listener, nullptr, nullptr);
        if (p.server < 0) fail("accept");
        ::setsockopt(p.client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(p.server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ::close(listener);
}

struct thread_result {
    std::uint64_t round_trips = 0;
    std::vector<std::uint32_t> micros; // each round trip's time, in microseconds
};

/// Starts a round trip of pair `i`: the client's receive, then its send.
void start_round_trip(std::vector<pair_state>& pairs, std::size_t i)
{
    pair_state& p = pairs[i];
    p.client_got = 0;
    p.sent = clock_type::now();
    submit_or_die(*p.on, IORING_OP_RECV, p.client, p.client_buffer.data(), message, tag(i, client_recv));
    submit_or_die(*p.on, IORING_OP_SEND, p.client, p.out.data(), message, tag(i, client_send));
}

/// Handles one completion; false once the run is over (a wake-up).
bool handle(std::vector<pair_state>& pairs, const completion& c, const std::atomic<bool>& running, thread_result& r)
{
    if (c.user_data == wake) return false;
    const std::size_t i = static_cast<std::size_t>(c.user_data >> 2);
    pair_state& p = pairs[i];
    if (c.result < 0) {
        std::fprintf(stderr, "bench_uring_rings: request failed: %s\n", std::strerror(-c.result));
        std::exit(1);
    }
    const auto got = static_cast<std::size_t>(c.result);
    switch (static_cast<kind>(c.user_data & 3)) {
    case client_send:
    case server_send:
        if (got != message) {
            std::fprintf(stderr, "bench_uring_rings: short send (%zu bytes)\n", got);
            std::exit(1);
        }
        break;
    case server_recv:
        if (got == 0) return true; // the client closed: the run is over
        p.server_got += got;
        if (p.server_got < message) {
            submit_or_die(*p.on, IORING_OP_RECV, p.server, p.server_buffer.data() + p.server_got,
                          message - p.server_got, tag(i, server_recv));
            break;
        }
        p.server_got = 0;
        // NOTE: the echo and the next receive share the buffer: the client
        // sends again only once it has the echo, so the send has read it
        // before the receive can write.
        submit_or_die(*p.on, IORING_OP_SEND, p.server, p.server_buffer.data(), message, tag(i, server_send));
        submit_or_die(*p.on, IORING_OP_RECV, p.server, p.server_buffer.data(), message, tag(i, server_recv));
        break;
    case client_recv:
        if (got == 0) return true;
        p.client_got += got;
        if (p.client_got < message) {
            submit_or_die(*p.on, IORING_OP_RECV, p.client, p.client_buffer.data() + p.client_got,
                          message - p.client_got, tag(i, client_recv));
            break;
        }
        ++r.round_trips;
        r.micros.push_back(static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - p.sent).count()));
        if (running.load(std::memory_order_relaxed)) start_round_trip(pairs, i);
        break;
    }
    return true;
}

void wake_one(ring& r)
{
    if (r.submit([](io_uring_sqe& e) {
            e.opcode = IORING_OP_NOP;
            e.user_data = wake;
        }))
        fail("submit of a wake-up");
}

struct outcome {
    double per_second = 0;
    double p50 = 0;
    double p99 = 0;
};

/// One run: `pairs_count` pairs of which the first `active` ping-pong, on
/// `threads` threads, with one shared ring or one ring per thread. With
/// `lopsided`, every active pair is placed on the first ring.
outcome run(unsigned threads, std::size_t pairs_count, std::size_t active, bool per_thread, bool lopsided,
            double seconds)
{
    std::vector<pair_state> pairs(pairs_count);
    make_pairs(pairs);
    std::vector<std::unique_ptr<ring>> rings;
    for (unsigned t = 0; t < (per_thread ? threads : 1u); ++t) rings.push_back(std::make_unique<ring>());
    for (std::size_t i = 0; i < pairs.size(); ++i) pairs[i].on = rings[lopsided ? 0 : i % rings.size()].get();
    std::atomic<bool> running{true};
    std::vector<thread_result> results(threads);
    for (auto& r : results) r.micros.reserve(1 << 20);
    for (std::size_t i = 0; i < active; ++i) {
        submit_or_die(*pairs[i].on, IORING_OP_RECV, pairs[i].server, pairs[i].server_buffer.data(), message,
                      tag(i, server_recv));
        start_round_trip(pairs, i);
    }
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            ring& mine = *rings[per_thread ? t : 0];
            std::array<completion, 64> batch;
            for (;;) {
                mine.wait();
                const std::size_t n = mine.take(batch.data(), batch.size());
                for (std::size_t k = 0; k < n; ++k) {
                    if (handle(pairs, batch[k], running, results[t])) continue;
                    // A wake-up: pass one on (another taker of a shared
                    // ring may be asleep with none left for it), then leave.
                    wake_one(mine);
                    return;
                }
            }
        });
    }
    const auto start = clock_type::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    running.store(false, std::memory_order_relaxed);
    const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    for (auto& r : rings) wake_one(*r);
    for (auto& w : workers) w.join();
    rings.clear(); // the kernel cancels what is still pending
    for (auto& p : pairs) {
        ::close(p.client);
        ::close(p.server);
    }
    std::vector<std::uint32_t> all;
    std::uint64_t total = 0;
    for (auto& r : results) {
        total += r.round_trips;
        all.insert(all.end(), r.micros.begin(), r.micros.end());
    }
    if (all.empty()) throw std::runtime_error("no round trip completed");
    std::sort(all.begin(), all.end());
    const auto at = [&](double q) { return static_cast<double>(all[static_cast<std::size_t>(q * (all.size() - 1))]); };
    return {static_cast<double>(total) / elapsed, at(0.50), at(0.99)};
}

} // namespace

int main(int argc, char** argv)
{
    const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
    const unsigned threads = 2;
    struct config {
        const char* name;
        std::size_t pairs;
        std::size_t active;
        bool lopsided;
    };
    const config configs[] = {
        {"1 pair", 1, 1, false},
        {"16 pairs", 16, 16, false},
        {"256 pairs", 256, 256, false},
        {"16 of 256 pairs, all on ring 0", 256, 16, true},
    };
    std::printf("ring sharing, %u threads, 64-byte ping-pong over TCP loopback, %.1f s a run\n", threads, seconds);
    std::printf("%-34s %-10s %14s %9s %9s\n", "workload", "rings", "round trips/s", "p50 us", "p99 us");
    for (const auto& c : configs) {
        outcome shared{}, own{};
        for (int round = 0; round < 2; ++round) {
            // Alternating order, so neither way always runs on a warmer machine.
            const bool own_first = round == 1;
            for (int k = 0; k < 2; ++k) {
                const bool per_thread = (k == 0) == own_first;
                const outcome o = run(threads, c.pairs, c.active, per_thread, c.lopsided, seconds / 2);
                outcome& sum = per_thread ? own : shared;
                sum.per_second += o.per_second / 2;
                sum.p50 += o.p50 / 2;
                sum.p99 += o.p99 / 2;
            }
        }
        std::printf("%-34s %-10s %14.0f %9.0f %9.0f\n", c.name, "shared", shared.per_second, shared.p50, shared.p99);
        std::printf("%-34s %-10s %14.0f %9.0f %9.0f\n", "", "per-thread", own.per_second, own.p50, own.p99);
        std::printf("%-34s %-10s %14.2f %9.2f %9.2f\n", "", "ratio", own.per_second / shared.per_second,
                    own.p50 / shared.p50, own.p99 / shared.p99);
    }
    return 0;
}
