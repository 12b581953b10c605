// How transmit_file sends a file on the io_uring backend: what
// docs/design/uring.md ("Sending a file") bases its choice on.
//
// Two ways to move a file's bytes to a TCP connection with io_uring, each
// request on portico's ring (detail/uring/ring.hpp), one at a time, as one
// transfer's loop would make them:
//   splice      IORING_OP_SPLICE from the file into a pipe, then from the
//               pipe into the socket until the pipe is empty (no copy
//               through user space); the pipe's size is the step;
//   read+send   IORING_OP_READ into a buffer, then IORING_OP_SEND of it
//               (two copies through user space); the buffer's size is the
//               step.
// First workload: one file of `megabytes` (from the page cache) over
// loopback to a thread that receives and discards; each variant runs three
// times, alternating, and prints the median rate and the process's CPU time
// per GiB (both ends, and any kernel worker, counted). Second: 16 transfers
// whose peers do not read; prints the threads the process has once they
// are stuck (a blocked splice holds a kernel worker thread; a send waits
// in a poll, on no thread), then cancels them and prints what each ends
// with and how long the cancel took. Linux only; compare the ratios.
//   bench_uring_transmit [megabytes, default 256]

#include <portico/detail/uring/ring.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using portico::detail::uring::completion;
using portico::detail::uring::ring;

[[noreturn]] void fail(const char* what)
{
    std::fprintf(stderr, "bench_uring_transmit: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

/// Submits one request and waits for its completion; returns its result.
template <class Fill>
int run_one(ring& r, Fill fill)
{
    if (r.submit_owned(fill)) fail("submit");
    completion c{};
    while (r.take_owned(&c, 1) == 0) r.wait();
    return c.result;
}

struct connection {
    int sender = -1;
    int receiver = -1;
};

connection connect_pair()
{
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) fail("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("bind");
    if (::listen(listener, 16) != 0) fail("listen");
    socklen_t length = sizeof a;
    if (::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &length) != 0) fail("getsockname");
    connection c;
    c.sender = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(c.sender, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("connect");
    c.receiver = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c.receiver < 0) fail("accept");
    ::close(listener);
    return c;
}

enum class way { splice, read_send };

/// Sends `size` bytes of `file` on `socket` the chosen way, `step` bytes at
/// a time; returns the bytes sent.
std::uint64_t transfer(ring& r, way how, int file, int socket, std::uint64_t size, std::size_t step,
                       std::vector<unsigned char>& buffer, const int (&pipe)[2])
{
    std::uint64_t offset = 0;
    while (offset < size) {
        const auto want = static_cast<std::uint32_t>(std::min<std::uint64_t>(step, size - offset));
        if (how == way::splice) {
            const int in = run_one(r, [&](io_uring_sqe& e) {
                e.opcode = IORING_OP_SPLICE;
                e.fd = pipe[1];
                e.off = static_cast<std::uint64_t>(-1);
                e.splice_fd_in = file;
                e.splice_off_in = offset;
                e.len = want;
            });
            if (in <= 0) return offset;
            for (int left = in; left > 0;) {
                const int out = run_one(r, [&](io_uring_sqe& e) {
                    e.opcode = IORING_OP_SPLICE;
                    e.fd = socket;
                    e.off = static_cast<std::uint64_t>(-1);
                    e.splice_fd_in = pipe[0];
                    e.splice_off_in = static_cast<std::uint64_t>(-1);
                    e.len = static_cast<std::uint32_t>(left);
                });
                if (out <= 0) return offset;
                left -= out;
            }
            offset += static_cast<std::uint64_t>(in);
        } else {
            const int in = run_one(r, [&](io_uring_sqe& e) {
                e.opcode = IORING_OP_READ;
                e.fd = file;
                e.addr = reinterpret_cast<std::uintptr_t>(buffer.data());
                e.len = want;
                e.off = offset;
            });
            if (in <= 0) return offset;
            for (int done = 0; done < in;) {
                const int out = run_one(r, [&](io_uring_sqe& e) {
                    e.opcode = IORING_OP_SEND;
                    e.fd = socket;
                    e.addr = reinterpret_cast<std::uintptr_t>(buffer.data() + done);
                    e.len = static_cast<std::uint32_t>(in - done);
                    e.msg_flags = MSG_NOSIGNAL;
                });
                if (out <= 0) return offset;
                done += out;
            }
            offset += static_cast<std::uint64_t>(in);
        }
    }
    return offset;
}

double cpu_seconds()
{
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct variant {
    const char* name;
    way how;
    std::size_t step;
};

struct sample {
    double gib_per_second = 0;
    double cpu_per_gib = 0;
};

sample run_variant(const variant& v, int file, std::uint64_t size)
{
    ring r;
    connection c = connect_pair();
    int pipe[2]{-1, -1};
    if (::pipe2(pipe, O_CLOEXEC) != 0) fail("pipe2");
    if (v.how == way::splice && ::fcntl(pipe[1], F_SETPIPE_SZ, static_cast<int>(v.step)) < 0) fail("F_SETPIPE_SZ");
    std::vector<unsigned char> buffer(v.how == way::read_send ? v.step : 0);
    std::thread reader([&] {
        std::vector<unsigned char> sink(1 << 20);
        std::uint64_t got = 0;
        while (got < size) {
            const ssize_t n = ::recv(c.receiver, sink.data(), sink.size(), 0);
            if (n <= 0) break;
            got += static_cast<std::uint64_t>(n);
        }
    });
    const double cpu_before = cpu_seconds();
    const auto start = clock_type::now();
    const std::uint64_t sent = transfer(r, v.how, file, c.sender, size, v.step, buffer, pipe);
    reader.join();
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    const double cpu = cpu_seconds() - cpu_before;
    if (sent != size) {
        std::fprintf(stderr, "bench_uring_transmit: %s sent %llu of %llu bytes\n", v.name,
                     static_cast<unsigned long long>(sent), static_cast<unsigned long long>(size));
        std::exit(1);
    }
    ::close(pipe[0]);
    ::close(pipe[1]);
    ::close(c.sender);
    ::close(c.receiver);
    const double gib = static_cast<double>(size) / (1024.0 * 1024.0 * 1024.0);
    return {gib / seconds, cpu / gib};
}

std::size_t thread_count()
{
    std::size_t n = 0;
    DIR* d = ::opendir("/proc/self/task");
    if (d == nullptr) fail("opendir");
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    return n;
}

/// 16 transfers to peers that never read, on one ring: the threads the
/// process has once they are stuck, then what cancelling them costs.
void stalled(way how, const char* name, int file)
{
    constexpr std::size_t transfers = 16;
    constexpr std::uint32_t step = 4u << 20; // more than a connection's buffers hold
    ring r;
    const std::size_t threads_before = thread_count();
    std::vector<connection> peers(transfers);
    std::vector<std::array<int, 2>> pipes(transfers);
    std::vector<unsigned char> buffer(step, 0x5a);
    for (std::size_t i = 0; i < transfers; ++i) {
        peers[i] = connect_pair();
        // Fill the connection first, so the request below finds no room.
        const int flags = ::fcntl(peers[i].sender, F_GETFL);
        ::fcntl(peers[i].sender, F_SETFL, flags | O_NONBLOCK);
        while (::send(peers[i].sender, buffer.data(), buffer.size(), MSG_NOSIGNAL) > 0) {
        }
        ::fcntl(peers[i].sender, F_SETFL, flags);
        if (how == way::splice) {
            if (::pipe2(pipes[i].data(), O_CLOEXEC) != 0) fail("pipe2");
            // Fill the pipe from the file, then splice it to the socket,
            // where it stops once the connection's buffers are full.
            const int in = run_one(r, [&](io_uring_sqe& e) {
                e.opcode = IORING_OP_SPLICE;
                e.fd = pipes[i][1];
                e.off = static_cast<std::uint64_t>(-1);
                e.splice_fd_in = file;
                e.splice_off_in = 0;
                e.len = 65536;
            });
            if (in <= 0) fail("splice into the pipe");
        }
    }
    for (std::size_t i = 0; i < transfers; ++i) {
        if (r.submit_owned([&](io_uring_sqe& e) {
                e.user_data = i;
                e.fd = peers[i].sender;
                if (how == way::splice) {
                    e.opcode = IORING_OP_SPLICE;
                    e.off = static_cast<std::uint64_t>(-1);
                    e.splice_fd_in = pipes[i][0];
                    e.splice_off_in = static_cast<std::uint64_t>(-1);
                    e.len = 65536;
                    return;
                }
                e.opcode = IORING_OP_SEND;
                e.addr = reinterpret_cast<std::uintptr_t>(buffer.data());
                e.len = step;
                e.msg_flags = MSG_NOSIGNAL;
            }))
            fail("submit");
    }
    // A splice into a full connection blocks a kernel worker: wait until the
    // count of threads settles (at most 2 s).
    std::size_t threads = thread_count();
    for (int settled = 0, rounds = 0; settled < 10 && rounds < 100; ++rounds) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const std::size_t now = thread_count();
        settled = now == threads ? settled + 1 : 0;
        threads = now;
    }
    const std::size_t pending = transfers - r.ready();
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < transfers; ++i) (void)r.cancel(i);
    std::vector<completion> done(transfers);
    std::size_t got = 0;
    std::string results;
    while (got < transfers) {
        r.wait();
        got += r.take_owned(done.data() + got, transfers - got);
    }
    const double micros = std::chrono::duration<double, std::micro>(clock_type::now() - start).count();
    std::sort(done.begin(), done.end(), [](const completion& a, const completion& b) { return a.result < b.result; });
    for (std::size_t i = 0; i < transfers;) {
        std::size_t j = i;
        while (j < transfers && done[j].result == done[i].result) ++j;
        // NOTE: appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a
        // false positive) on `"literal" + std::to_string(...)` here.
        results += ' ';
        results += std::to_string(j - i);
        results += 'x';
        if (done[i].result >= 0) {
            results += std::to_string(done[i].result);
            results += " bytes";
        } else if (const char* text = ::strerrordesc_np(-done[i].result); text != nullptr) {
            results += text;
        } else {
            results += "errno ";
            results += std::to_string(-done[i].result);
        }
        i = j;
    }
    std::printf("%-10s %2zu pending, threads %zu -> %zu, cancelled in %.0f us:%s\n", name, pending, threads_before,
                threads, micros, results.c_str());
    for (std::size_t i = 0; i < transfers; ++i) {
        ::close(peers[i].sender);
        ::close(peers[i].receiver);
        if (how == way::splice) {
            ::close(pipes[i][0]);
            ::close(pipes[i][1]);
        }
    }
}

} // namespace

int main(int argc, char** argv)
{
    const std::uint64_t megabytes = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256;
    const std::uint64_t size = megabytes << 20;
    char path[] = "/tmp/bench_uring_transmit.XXXXXX";
    const int file = ::mkstemp(path);
    if (file < 0) fail("mkstemp");
    ::unlink(path);
    {
        std::vector<unsigned char> block(1 << 20);
        for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<unsigned char>(i * 131);
        for (std::uint64_t at = 0; at < size; at += block.size()) {
            if (::pwrite(file, block.data(), block.size(), static_cast<off_t>(at)) < 0) fail("pwrite");
        }
    }
    const std::array<variant, 6> variants{{
        {"splice", way::splice, 64 << 10},
        {"splice", way::splice, 256 << 10},
        {"splice", way::splice, 1 << 20},
        {"read+send", way::read_send, 64 << 10},
        {"read+send", way::read_send, 256 << 10},
        {"read+send", way::read_send, 1 << 20},
    }};
    std::array<std::array<sample, 3>, variants.size()> samples{};
    for (std::size_t round = 0; round < 3; ++round) {
        for (std::size_t k = 0; k < variants.size(); ++k) {
            const std::size_t v = round % 2 == 0 ? k : variants.size() - 1 - k;
            samples[v][round] = run_variant(variants[v], file, size);
        }
    }
    std::printf("one transfer of %llu MiB over TCP loopback, one request at a time (median of 3)\n",
                static_cast<unsigned long long>(megabytes));
    std::printf("%-10s %8s %10s %14s\n", "way", "step", "GiB/s", "CPU s per GiB");
    for (std::size_t v = 0; v < variants.size(); ++v) {
        auto s = samples[v];
        std::sort(s.begin(), s.end(),
                  [](const sample& a, const sample& b) { return a.gib_per_second < b.gib_per_second; });
        std::printf("%-10s %7zuK %10.2f %14.2f\n", variants[v].name, variants[v].step >> 10, s[1].gib_per_second,
                    s[1].cpu_per_gib);
    }
    std::printf("\n16 transfers to peers that do not read, then cancelled\n");
    // read+send first: the kernel keeps idle workers a while, which would
    // show in its count.
    stalled(way::read_send, "read+send", file);
    stalled(way::splice, "splice", file);
    ::close(file);
}
