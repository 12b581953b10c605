// The io_uring ring of the Linux backend: submissions from many threads,
// completions taken by many threads, each exactly once; synchronous cancels
// from a thread that does not own the ring; and the error a process gets
// when the system refuses io_uring.
#include <portico/detail/uring/ring.hpp>

#include "support/catch.hpp"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace uring = portico::detail::uring;

TEST_CASE("no-op requests from four threads come back once each, to two takers", "[uring]")
{
    uring::ring r;
    constexpr std::size_t per_thread = 20'000;
    constexpr std::size_t submitters = 4;
    constexpr std::size_t total = per_thread * submitters;
    // Every user_data is an index + 1 (0 stays unused); each must be seen once.
    std::vector<std::atomic<int>> seen(total);
    std::atomic<std::size_t> taken{0};
    std::atomic<std::size_t> refused{0};
    std::atomic<std::size_t> failed{0};

    auto taker = [&] {
        std::vector<uring::completion> batch(64);
        while (taken.load() < total) {
            const std::size_t n = r.take(batch.data(), batch.size());
            for (std::size_t i = 0; i < n; ++i) {
                if (batch[i].result != 0) failed.fetch_add(1);
                seen[batch[i].user_data - 1].fetch_add(1);
            }
            taken.fetch_add(n);
            if (n == 0) std::this_thread::yield();
        }
    };
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < submitters; ++t) {
        threads.emplace_back([&, t] {
            for (std::size_t i = 0; i < per_thread; ++i) {
                const std::uint64_t data = t * per_thread + i + 1;
                for (;;) {
                    const auto ec = r.submit([&](io_uring_sqe& sqe) {
                        sqe.opcode = IORING_OP_NOP;
                        sqe.user_data = data;
                    });
                    if (!ec) break;
                    // The completion queue is full for now: the takers empty it.
                    refused.fetch_add(1);
                    std::this_thread::yield();
                }
            }
        });
    }
    std::thread taker1(taker);
    std::thread taker2(taker);
    for (auto& t : threads) t.join();
    taker1.join();
    taker2.join();

    CHECK(taken.load() == total);
    CHECK(failed.load() == 0);
    std::size_t once = 0;
    for (const auto& s : seen) once += s.load() == 1 ? 1 : 0;
    CHECK(once == total);
    CHECK(r.ready() == 0);
    INFO("submissions refused for a full completion queue: " << refused.load());
}

TEST_CASE("completions past a full completion queue are kept by the kernel and taken", "[uring]")
{
    uring::ring r;
    // Twice the queue, with nobody taking: half of them overflow.
    const std::size_t total = 2 * std::size_t{r.cq_entries()};
    std::size_t submitted = 0;
    for (std::size_t i = 0; i < total; ++i) {
        const auto ec = r.submit([&](io_uring_sqe& sqe) {
            sqe.opcode = IORING_OP_NOP;
            sqe.user_data = i + 1;
        });
        // An older kernel refuses submissions while its overflow list is
        // not empty (EBUSY); this one keeps taking them.
        if (ec) break;
        ++submitted;
    }
    CHECK(submitted > r.cq_entries());
    std::vector<uring::completion> batch(256);
    std::vector<int> seen(total);
    std::size_t taken = 0;
    for (std::size_t n; (n = r.take(batch.data(), batch.size())) != 0;) {
        for (std::size_t i = 0; i < n; ++i) ++seen[batch[i].user_data - 1];
        taken += n;
    }
    CHECK(taken == submitted);
    std::size_t once = 0;
    for (std::size_t i = 0; i < submitted; ++i) once += seen[i] == 1 ? 1 : 0;
    CHECK(once == submitted);
}

TEST_CASE("wait() returns once a completion is ready, and take() leaves none behind", "[uring]")
{
    uring::ring r;
    std::atomic<std::uint32_t> ready_after_wait{0};
    std::thread waiter([&] {
        r.wait();
        ready_after_wait = r.ready();
    });
    const auto ec = r.submit([](io_uring_sqe& sqe) {
        sqe.opcode = IORING_OP_NOP;
        sqe.user_data = 7;
    });
    REQUIRE_FALSE(ec);
    waiter.join();
    CHECK(ready_after_wait.load() == 1);
    uring::completion c[4]{};
    REQUIRE(r.take(c, 4) == 1);
    CHECK(c[0].user_data == 7);
    CHECK(r.take(c, 4) == 0);
}

TEST_CASE("a request the kernel refuses at submission completes with its error", "[uring]")
{
    uring::ring r;
    // An opcode past the kernel's last: refused, but as a completion.
    const auto ec = r.submit([](io_uring_sqe& sqe) {
        sqe.opcode = 0xff;
        sqe.user_data = 9;
    });
    REQUIRE_FALSE(ec);
    r.wait();
    uring::completion c{};
    REQUIRE(r.take(&c, 1) == 1);
    CHECK(c.user_data == 9);
    CHECK(c.result == -EINVAL);
}

TEST_CASE("an owned ring's pending requests are cancelled synchronously from another thread, one or by "
          "descriptor",
          "[uring]")
{
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    uring::ring r;
    char in[3][8]{};
    // Three receives that no byte will end, submitted by this thread alone.
    for (std::uint64_t tag = 1; tag <= 3; ++tag) {
        const auto ec = r.submit_owned([&](io_uring_sqe& sqe) {
            sqe.opcode = IORING_OP_RECV;
            sqe.fd = pair[0];
            sqe.addr = reinterpret_cast<std::uintptr_t>(in[tag - 1]);
            sqe.len = sizeof in[0];
            sqe.user_data = tag;
        });
        REQUIRE_FALSE(ec);
    }
    uring::completion c[4]{};
    CHECK(r.take_owned(c, 4) == 0);
    // From a thread that never submitted to the ring: no submission queue,
    // no lock of ours. Each call returns once the kernel has cancelled.
    std::error_code one, rest;
    std::thread([&] {
        one = r.cancel(2);
        rest = r.cancel_all_on(pair[0]);
    }).join();
    CHECK_FALSE(one);
    CHECK_FALSE(rest);
    std::size_t taken = 0;
    while (taken < 3) {
        r.wait();
        taken += r.take_owned(c + taken, 4 - taken);
    }
    for (std::size_t i = 0; i < 3; ++i) CHECK(c[i].result == -ECANCELED);
    // One completion each, no more.
    CHECK(r.take_owned(c, 4) == 0);
    ::close(pair[0]);
    ::close(pair[1]);
}

namespace {

/// In a child process whose seccomp filter makes io_uring_setup fail with
/// `error`, makes a ring; returns the child's report: the errno and message
/// of the std::system_error it caught, or what went wrong.
std::string ring_refused_with(int error)
{
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(fds[0]);
        std::string report;
        sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<__u32>(offsetof(seccomp_data, nr))),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<__u32>(error) & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
        if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
            report = "no seccomp filter: " + std::string(std::strerror(errno));
        } else {
            try {
                uring::ring r;
                report = "the ring was made";
            } catch (const std::system_error& e) {
                report = std::to_string(e.code().value()) + " " + e.what();
            }
        }
        (void)!::write(fds[1], report.data(), report.size());
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string report;
    char chunk[256];
    for (ssize_t n; (n = ::read(fds[0], chunk, sizeof chunk)) > 0;) report.append(chunk, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    return report;
}

} // namespace

TEST_CASE("a container that blocks io_uring gets an error that says so and what to do", "[uring]")
{
    const std::string report = ring_refused_with(EPERM);
    INFO(report);
    CHECK(report.rfind(std::to_string(EPERM) + " ", 0) == 0);
    CHECK(report.find("io_uring_setup") != std::string::npos);
    CHECK(report.find("seccomp") != std::string::npos);
    CHECK(report.find("kernel.io_uring_disabled") != std::string::npos);
}

TEST_CASE("a kernel without io_uring gets an error that says so", "[uring]")
{
    const std::string report = ring_refused_with(ENOSYS);
    INFO(report);
    CHECK(report.rfind(std::to_string(ENOSYS) + " ", 0) == 0);
    CHECK(report.find("has no io_uring") != std::string::npos);
}
