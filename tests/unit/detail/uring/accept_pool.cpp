// The Linux accept pool over one ring per pool thread: one multishot accept
// serves the listener, pauses at the depth, and the waiters it serves resume
// on the rings of the threads in run() in turn, so connections, whose
// requests go to the ring of the thread they run on, begin on every thread.
#include <portico/detail/uring/accept_pool.hpp>

#include "support/catch.hpp"
#include "support/uring_scheduler.hpp"

#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace uring = portico::detail::uring;
using portico::test::on_ring;
using portico::test::running_uring_scheduler;
using portico::test::wait_until;

namespace {

/// accept() on the pool: the error, or the accepted descriptor.
struct accepted : uring::accept_awaiter {
    using uring::accept_awaiter::accept_awaiter;
    std::pair<std::error_code, int> await_resume() noexcept
    {
        if (auto ec = result()) return {ec, -1};
        return {{}, static_cast<int>(take_socket())};
    }
};

/// A coroutine that starts at once and that nobody awaits.
struct detached {
    struct promise_type {
        detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
};

/// Accepts `n` connections one after the other, counting for each the ring
/// of the thread it resumed on.
detached accept_loop(uring::scheduler& s, uring::accept_pool* pool, unsigned n,
                     std::array<std::atomic<int>, 2>& per_ring, std::vector<int>& fds, std::atomic<unsigned>& count)
{
    for (unsigned i = 0; i < n; ++i) {
        auto [ec, fd] = co_await accepted(pool);
        if (ec) break;
        fds.push_back(fd);
        per_ring[s.ring_of_this_thread()].fetch_add(1);
        count.fetch_add(1);
    }
}

/// A listening socket on loopback, associated with `sched`.
uring::socket_handle loopback_listener(uring::scheduler& sched)
{
    uring::socket_handle listener;
    REQUIRE_FALSE(listener.open(false, portico::detail::socket_kind::stream));
    REQUIRE_FALSE(listener.associate(sched, false));
    REQUIRE_FALSE(listener.bind(portico::endpoint{portico::address_v4::loopback(), 0}));
    REQUIRE_FALSE(listener.listen(64));
    return listener;
}

/// A blocking client connected to `where`: the handshake is done when it
/// returns, so the connection waits in the listener's backlog or has been
/// accepted.
int connect_client(const portico::endpoint& where)
{
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(where.port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(c >= 0);
    REQUIRE(::connect(c, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0);
    return c;
}

/// The port of a socket's own side, or of its peer's.
std::uint16_t port_of(int fd, bool peer)
{
    sockaddr_in a{};
    socklen_t length = sizeof a;
    const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &length)
                       : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length);
    REQUIRE(r == 0);
    return ntohs(a.sin_port);
}

} // namespace

TEST_CASE("one multishot accept takes every connection; the waiters it serves resume on every ring", "[uring]")
{
    running_uring_scheduler rs(2);
    REQUIRE(wait_until([&] { return rs.sched.ring_count() == 2; }));
    uring::socket_handle listener = loopback_listener(rs.sched);
    const auto where = listener.local_endpoint().value();

    const std::uint64_t before0 = rs.sched.submissions_on(0), before1 = rs.sched.submissions_on(1);
    uring::accept_pool* pool = nullptr;
    on_ring(rs.sched, 0, [&] { pool = new uring::accept_pool(rs.sched, std::move(listener), false, 8, {}); });
    REQUIRE(wait_until([&] { return rs.sched.submissions_on(0) - before0 == 1; }));

    // Connections one at a time, each accepted by a coroutine waiting for it.
    constexpr unsigned connections = 16;
    std::array<std::atomic<int>, 2> per_ring{};
    std::vector<int> accepted_fds, clients;
    std::atomic<unsigned> count{0};
    on_ring(rs.sched, 0, [&] { accept_loop(rs.sched, pool, connections, per_ring, accepted_fds, count); });
    for (unsigned i = 0; i < connections; ++i) {
        clients.push_back(connect_client(where));
        REQUIRE(wait_until([&] { return count.load() == i + 1; }));
    }
    // One request for all of them: a single-shot accept is submitted again
    // for each connection.
    CHECK(rs.sched.submissions_on(0) - before0 == 1);
    CHECK(rs.sched.submissions_on(1) - before1 == 0);
    // Every connection completed on ring 0: without the hand-over every
    // waiter would have resumed there.
    CHECK(per_ring[0].load() > 0);
    CHECK(per_ring[1].load() > 0);
    CHECK(per_ring[0].load() + per_ring[1].load() == static_cast<int>(connections));

    pool->release_owner();
    for (int fd : accepted_fds) ::close(fd);
    for (int fd : clients) ::close(fd);
}

TEST_CASE("the accept pauses while `depth` connections wait unclaimed; accept() resumes it", "[uring]")
{
    running_uring_scheduler rs(1);
    uring::socket_handle listener = loopback_listener(rs.sched);
    const auto where = listener.local_endpoint().value();
    uring::accept_pool* pool = nullptr;
    on_ring(rs.sched, 0, [&] { pool = new uring::accept_pool(rs.sched, std::move(listener), false, 2, {}); });

    std::vector<int> clients;
    clients.push_back(connect_client(where));
    REQUIRE(wait_until([&] { return pool->ready_count() == 1; }));
    CHECK(pool->accepting());
    clients.push_back(connect_client(where));
    // The second fills the depth: the request is cancelled.
    REQUIRE(wait_until([&] { return pool->ready_count() == 2 && !pool->accepting(); }));
    const std::uint64_t submitted = rs.sched.submissions_on(0);
    // These wait in the kernel's backlog: no request is left to take them.
    for (int i = 0; i < 3; ++i) clients.push_back(connect_client(where));
    CHECK(pool->ready_count() == 2);
    CHECK_FALSE(pool->accepting());

    // Taking them arms the accept again, which takes the backlog.
    std::array<std::atomic<int>, 2> per_ring{};
    std::vector<int> accepted_fds;
    std::atomic<unsigned> count{0};
    on_ring(rs.sched, 0, [&] { accept_loop(rs.sched, pool, 5, per_ring, accepted_fds, count); });
    REQUIRE(wait_until([&] { return count.load() == 5; }));
    CHECK(rs.sched.submissions_on(0) > submitted);
    std::vector<std::uint16_t> sent, got;
    for (int fd : clients) sent.push_back(port_of(fd, false));
    for (int fd : accepted_fds) got.push_back(port_of(fd, true));
    std::sort(sent.begin(), sent.end());
    std::sort(got.begin(), got.end());
    CHECK(got == sent);
    CHECK(pool->failed_accepts() == 0);

    pool->release_owner();
    for (int fd : accepted_fds) ::close(fd);
    for (int fd : clients) ::close(fd);
}

TEST_CASE("a connection its peer reset before the accept is dropped and counted; the next is served", "[uring]")
{
    running_uring_scheduler rs(1);
    uring::socket_handle listener = loopback_listener(rs.sched);
    const auto where = listener.local_endpoint().value();
    uring::accept_pool* pool = nullptr;
    on_ring(rs.sched, 0, [&] { pool = new uring::accept_pool(rs.sched, std::move(listener), false, 1, {}); });

    // Paused at a depth of 1, so the next connections wait in the backlog.
    const int first = connect_client(where);
    REQUIRE(wait_until([&] { return pool->ready_count() == 1 && !pool->accepting(); }));
    // This one resets while it waits there; the last is good.
    const int reset = connect_client(where);
    const linger abortive{1, 0};
    REQUIRE(::setsockopt(reset, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) == 0);
    ::close(reset);
    const int good = connect_client(where);

    std::array<std::atomic<int>, 2> per_ring{};
    std::vector<int> accepted_fds;
    std::atomic<unsigned> count{0};
    on_ring(rs.sched, 0, [&] { accept_loop(rs.sched, pool, 2, per_ring, accepted_fds, count); });
    REQUIRE(wait_until([&] { return count.load() == 2; }));
    CHECK(pool->failed_accepts() == 1);
    REQUIRE(accepted_fds.size() == 2);
    CHECK(port_of(accepted_fds[0], true) == port_of(first, false));
    CHECK(port_of(accepted_fds[1], true) == port_of(good, false));

    pool->release_owner();
    for (int fd : accepted_fds) ::close(fd);
    ::close(first);
    ::close(good);
}

TEST_CASE("the ready queue keeps its order as it grows past the depth and wraps", "[uring]")
{
    uring::ready_queue q(2);
    int next_in = 0, next_out = 0;
    // Wrap round the first room, then overshoot it, then drain and refill.
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 1 + 3 * round; ++i) REQUIRE(q.push({next_in++, {}}));
        while (q.size() > 1) CHECK(q.pop().fd == next_out++);
    }
    while (!q.empty()) CHECK(q.pop().fd == next_out++);
    CHECK(next_out == next_in);
    for (int i = 0; i < 5; ++i) REQUIRE(q.push({next_in++, {}}));
    for (int i = 0; i < 5; ++i) CHECK(q.pop().fd == next_out++);
}
