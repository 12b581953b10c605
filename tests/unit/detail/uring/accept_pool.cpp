// The Linux accept pool over one ring per pool thread: its accepts are
// spread over the rings of the threads in run(), so connections, which stay
// on the ring that accepted them, begin on every thread.
#include <portico/detail/uring/accept_pool.hpp>

#include "support/catch.hpp"
#include "support/uring_scheduler.hpp"

#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/stop_token.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
    using accept_awaiter::accept_awaiter;
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
/// of the thread it resumed on: the ring whose accept took the connection.
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

} // namespace

TEST_CASE("a listener's accepts are spread over the rings of the threads in run()", "[uring]")
{
    running_uring_scheduler rs(2);
    REQUIRE(wait_until([&] { return rs.sched.ring_count() == 2; }));
    uring::socket_handle listener;
    REQUIRE_FALSE(listener.open(false, portico::detail::socket_kind::stream));
    REQUIRE_FALSE(listener.associate(rs.sched, false));
    REQUIRE_FALSE(listener.bind(portico::endpoint{portico::address_v4::loopback(), 0}));
    REQUIRE_FALSE(listener.listen(64));
    const auto where = listener.local_endpoint().value();

    constexpr unsigned depth = 8;
    const std::uint64_t before0 = rs.sched.submissions_on(0), before1 = rs.sched.submissions_on(1);
    uring::accept_pool* pool = nullptr;
    // Armed on ring 0's thread: without the spreading every slot would go
    // to ring 0, and every connection would begin on that thread.
    on_ring(rs.sched, 0, [&] { pool = new uring::accept_pool(rs.sched, std::move(listener), false, depth, {}); });
    REQUIRE(wait_until(
        [&] { return rs.sched.submissions_on(0) - before0 + rs.sched.submissions_on(1) - before1 == depth; }));
    CHECK(rs.sched.submissions_on(0) - before0 == depth / 2);
    CHECK(rs.sched.submissions_on(1) - before1 == depth / 2);

    // Connections one at a time, each accepted by a coroutine waiting for it.
    constexpr unsigned connections = 16;
    std::array<std::atomic<int>, 2> per_ring{};
    std::vector<int> accepted_fds, clients;
    std::atomic<unsigned> count{0};
    on_ring(rs.sched, 0, [&] { accept_loop(rs.sched, pool, connections, per_ring, accepted_fds, count); });
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(where.port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (unsigned i = 0; i < connections; ++i) {
        const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(c >= 0);
        clients.push_back(c);
        REQUIRE(::connect(c, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0);
        REQUIRE(wait_until([&] { return count.load() == i + 1; }));
    }
    CHECK(per_ring[0].load() > 0);
    CHECK(per_ring[1].load() > 0);
    CHECK(per_ring[0].load() + per_ring[1].load() == static_cast<int>(connections));

    pool->release_owner();
    for (int fd : accepted_fds) ::close(fd);
    for (int fd : clients) ::close(fd);
}
