// The Linux backend's stream operations over real loopback sockets: bytes
// over several buffers, a wait, connect refused, a peer's reset and its
// orderly close, and a pending receive ended by a stop and by close();
// requests queued in a turn and submitted together, and a close, a stop or a
// cancel() that comes while they are still queued.
#include <portico/detail/uring/socket_ops.hpp>

#include "support/catch.hpp"
#include "support/uring_scheduler.hpp"

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/detail/frame_allocation.hpp>
#include <portico/stop_token.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <atomic>
#include <coroutine>
#include <exception>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace uring = portico::detail::uring;
using portico::errc;
using portico::task;
using portico::test::on_ring;
using portico::test::running_uring_scheduler;
using portico::test::wait_until;

namespace {

/// An op with the awaiter's last step: its error and byte count.
template <class Op>
struct awaited : Op {
    using Op::Op;
    std::pair<std::error_code, std::size_t> await_resume() const noexcept { return {this->error_, this->bytes_}; }
};

/// A listener on 127.0.0.1, an ephemeral port.
uring::socket_handle listen_on_loopback(uring::scheduler& s, portico::endpoint& where)
{
    uring::socket_handle l;
    REQUIRE_FALSE(l.open(false, portico::detail::socket_kind::stream));
    REQUIRE_FALSE(l.associate(s, false));
    REQUIRE_FALSE(l.bind(portico::endpoint{portico::address_v4::loopback(), 0}));
    REQUIRE_FALSE(l.listen(16));
    where = l.local_endpoint().value();
    return l;
}

struct connected {
    uring::socket_handle client;
    uring::socket_handle server;
};

task<std::error_code> accept_into(uring::scheduler& s, const uring::socket_handle& listener, uring::socket_handle& out)
{
    awaited<uring::stream_accept_op> op(listener.ref(s));
    auto [ec, n] = co_await op;
    if (!ec) {
        ec = out.adopt(op.accepted_fd());
        if (!ec) (void)out.associate(s, false);
    }
    co_return ec;
}

task<std::error_code> connect_to(uring::scheduler& s, uring::socket_handle& c, portico::endpoint where)
{
    auto [ec, n] = co_await awaited<uring::stream_connect_op>(c.ref(s), where);
    co_return ec;
}

/// A connected pair over loopback, made by the ring's accept and connect.
connected connect_pair(uring::scheduler& s)
{
    portico::endpoint where;
    uring::socket_handle listener = listen_on_loopback(s, where);
    connected pair;
    REQUIRE_FALSE(pair.client.open(false, portico::detail::socket_kind::stream));
    REQUIRE_FALSE(pair.client.associate(s, false));
    auto [accepted, connected_ec] =
        portico::sync_wait(portico::when_all(accept_into(s, listener, pair.server), connect_to(s, pair.client, where)));
    REQUIRE_FALSE(accepted);
    REQUIRE_FALSE(connected_ec);
    return pair;
}

using recv_result = std::pair<std::error_code, std::size_t>;

template <std::size_t N, class Buffers>
task<recv_result> receive(uring::scheduler& s, const uring::socket_handle& h, Buffers buffers)
{
    co_return co_await awaited<uring::stream_recv_op<N>>(h.ref(s), buffers);
}

template <std::size_t N, class Buffers>
task<recv_result> send(uring::scheduler& s, const uring::socket_handle& h, Buffers buffers)
{
    co_return co_await awaited<uring::stream_send_op<N>>(h.ref(s), buffers);
}

} // namespace

TEST_CASE("bytes gathered from three buffers arrive in order, scattered into two", "[uring]")
{
    running_uring_scheduler rs;
    auto pair = connect_pair(rs.sched);
    const std::string a = "head-", b = "middle-", c = "tail";
    const std::array<portico::const_buffer, 3> out{portico::buffer(a), portico::buffer(b), portico::buffer(c)};
    auto [sent_ec, sent] = portico::sync_wait(send<3>(rs.sched, pair.client, out));
    REQUIRE_FALSE(sent_ec);
    CHECK(sent == a.size() + b.size() + c.size());

    std::string first(7, '\0'), second(32, '\0');
    std::string got;
    while (got.size() < sent) {
        const std::array<portico::mutable_buffer, 2> in{portico::buffer(first), portico::buffer(second)};
        auto [ec, n] = portico::sync_wait(receive<2>(rs.sched, pair.server, in));
        REQUIRE_FALSE(ec);
        REQUIRE(n > 0);
        got += (first + second).substr(0, n);
    }
    CHECK(got == a + b + c);
}

TEST_CASE("a wait completes when bytes arrive and consumes none of them", "[uring]")
{
    running_uring_scheduler rs;
    auto pair = connect_pair(rs.sched);
    auto waiting = [&]() -> task<recv_result> {
        co_return co_await awaited<uring::stream_wait_op>(pair.server.ref(rs.sched));
    };
    std::thread sender([&] {
        const std::string hello = "hello";
        (void)portico::sync_wait(send<1>(rs.sched, pair.client, portico::buffer(hello)));
    });
    auto [wait_ec, events] = portico::sync_wait(waiting());
    sender.join();
    CHECK_FALSE(wait_ec);
    std::string in(5, '\0');
    auto [ec, n] = portico::sync_wait(receive<1>(rs.sched, pair.server, portico::buffer(in)));
    CHECK_FALSE(ec);
    CHECK(n == 5);
    CHECK(in == "hello");
}

TEST_CASE("connect to a port nobody listens on is connection_refused", "[uring]")
{
    running_uring_scheduler rs;
    portico::endpoint where;
    {
        // A port that was just free: bound, then closed without listening.
        uring::socket_handle probe = listen_on_loopback(rs.sched, where);
    }
    uring::socket_handle c;
    REQUIRE_FALSE(c.open(false, portico::detail::socket_kind::stream));
    REQUIRE_FALSE(c.associate(rs.sched, false));
    const std::error_code ec = portico::sync_wait(connect_to(rs.sched, c, where));
    CHECK(ec == errc::connection_refused);
}

TEST_CASE("the peer's orderly close is a 0-byte receive, its reset is connection_reset", "[uring]")
{
    running_uring_scheduler rs;
    {
        auto pair = connect_pair(rs.sched);
        REQUIRE_FALSE(pair.client.shutdown_send());
        std::string in(8, '\0');
        auto [ec, n] = portico::sync_wait(receive<1>(rs.sched, pair.server, portico::buffer(in)));
        CHECK_FALSE(ec);
        CHECK(n == 0);
    }
    {
        auto pair = connect_pair(rs.sched);
        pair.client.close_abortive();
        std::string in(8, '\0');
        auto [ec, n] = portico::sync_wait(receive<1>(rs.sched, pair.server, portico::buffer(in)));
        CHECK(ec == errc::connection_reset);
        CHECK(n == 0);
    }
}

TEST_CASE("a pending receive ends with operation_aborted when stopped, and when its socket is closed", "[uring]")
{
    running_uring_scheduler rs;
    auto pair = connect_pair(rs.sched);
    std::string in(8, '\0');
    {
        portico::stop_source stop;
        recv_result result;
        std::thread waiter([&] {
            result = portico::sync_wait(receive<1>(rs.sched, pair.server, portico::buffer(in)), stop.get_token());
        });
        // Whether the stop comes before or after the request is submitted,
        // the receive must end aborted (nothing is ever sent).
        stop.request_stop();
        waiter.join();
        CHECK(result.first == errc::operation_aborted);
    }
    {
        recv_result result;
        // Closed once the kernel holds the receive: it holds the socket too,
        // so only the cancel that close() makes first can end it.
        const std::uint64_t before = rs.sched.submissions();
        std::thread waiter(
            [&] { result = portico::sync_wait(receive<1>(rs.sched, pair.server, portico::buffer(in))); });
        while (rs.sched.submissions() == before) std::this_thread::yield();
        pair.server.close();
        waiter.join();
        CHECK(result.first == errc::operation_aborted);
    }
    // Only the fixture's own count, once the pool thread that resumed the
    // waiter has returned from the completion (its count ends after that).
    CHECK(wait_until([&] { return rs.sched.outstanding() == 1; }));
}

namespace {

/// A coroutine that starts at once and that nobody awaits: it runs on the
/// thread that calls it until its first suspension, then wherever it is
/// resumed. `done` is set last.
struct fire_and_forget {
    struct promise_type {
        fire_and_forget get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
};

fire_and_forget receive_into(uring::scheduler& s, const uring::socket_handle& h, std::string& in, recv_result& out,
                             std::atomic<bool>& done)
{
    out = co_await awaited<uring::stream_recv_op<1>>(h.ref(s), portico::buffer(in));
    done = true;
}

} // namespace

TEST_CASE("a receive started by a thread that then exits still completes with the bytes", "[uring]")
{
    running_uring_scheduler rs;
    auto pair = connect_pair(rs.sched);
    std::string in(5, '\0');
    recv_result result;
    std::atomic<bool> done{false};
    const std::uint64_t before = rs.sched.submissions();
    // The thread starts the receive and ends; the request must not end with
    // it (io_uring fails a request whose submitting thread has exited).
    std::thread([&] { receive_into(rs.sched, pair.server, in, result, done); }).join();
    while (rs.sched.submissions() == before) std::this_thread::yield(); // the kernel holds it
    const std::string hello = "hello";
    auto [sent_ec, sent] = portico::sync_wait(send<1>(rs.sched, pair.client, portico::buffer(hello)));
    REQUIRE_FALSE(sent_ec);
    while (!done.load()) std::this_thread::yield();
    CHECK_FALSE(result.first);
    CHECK(result.second == 5);
    CHECK(in == "hello");
}

namespace {

/// A coroutine that starts at once, that nobody awaits, and whose stop
/// token is the one passed to it: its operations see it.
struct detached {
    struct promise_type {
        template <class... Args>
        explicit promise_type(Args&... args) noexcept
        {
            (take(args), ...);
        }
        detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
        [[nodiscard]] const portico::stop_token& stop_token() const noexcept { return token; }

        void take(portico::stop_token& t) noexcept { token = t; }
        template <class T>
        void take(T&) noexcept
        {}

        portico::stop_token token;
    };
};

/// Awaits `Op` on `h` (a receive into `in`, or a wait) and records its result.
template <class Op>
detached await_on(uring::scheduler& s, const uring::socket_handle& h, std::string& in, recv_result& out,
                  std::atomic<bool>& done, portico::stop_token token)
{
    (void)token; // the promise took it
    if constexpr (std::is_same_v<Op, uring::stream_wait_op>) {
        out = co_await awaited<Op>(h.ref(s));
    } else {
        out = co_await awaited<Op>(h.ref(s), portico::buffer(in));
    }
    done = true;
}

} // namespace

TEST_CASE("a stop requested on one pool thread cancels a receive pending on another thread's ring", "[uring]")
{
    running_uring_scheduler rs;
    REQUIRE(wait_until([&] { return rs.sched.ring_count() == 2; }));
    auto pair = connect_pair(rs.sched);
    std::string in(8, '\0');
    recv_result result;
    std::atomic<bool> done{false};
    portico::stop_source stop;
    int receive_ring = -1, stop_ring = -1;
    const std::uint64_t before = rs.sched.submissions_on(0);
    on_ring(rs.sched, 0, [&] {
        receive_ring = static_cast<int>(rs.sched.ring_of_this_thread());
        await_on<uring::stream_recv_op<1>>(rs.sched, pair.server, in, result, done, stop.get_token());
    });
    // The kernel holds the receive, on ring 0.
    REQUIRE(wait_until([&] { return rs.sched.submissions_on(0) > before; }));
    on_ring(rs.sched, 1, [&] {
        stop_ring = static_cast<int>(rs.sched.ring_of_this_thread());
        stop.request_stop();
    });
    // A cancel asked of the wrong ring finds nothing: the receive would wait
    // for bytes that never come. Then the peer's close ends it (with 0 bytes).
    const bool ended = wait_until([&] { return done.load(); });
    CHECK(ended);
    if (!ended) pair.client.close();
    while (!done.load()) std::this_thread::yield();
    CHECK(receive_ring == 0);
    CHECK(stop_ring == 1);
    CHECK(result.first == errc::operation_aborted);
}

TEST_CASE("close() ends requests of one socket pending on two rings", "[uring]")
{
    running_uring_scheduler rs;
    REQUIRE(wait_until([&] { return rs.sched.ring_count() == 2; }));
    auto pair = connect_pair(rs.sched);
    std::string in(8, '\0');
    recv_result received, waited;
    std::atomic<bool> receive_done{false}, wait_done{false};
    const std::uint64_t before0 = rs.sched.submissions_on(0), before1 = rs.sched.submissions_on(1);
    on_ring(rs.sched, 0,
            [&] { await_on<uring::stream_recv_op<1>>(rs.sched, pair.server, in, received, receive_done, {}); });
    on_ring(rs.sched, 1, [&] { await_on<uring::stream_wait_op>(rs.sched, pair.server, in, waited, wait_done, {}); });
    REQUIRE(wait_until([&] { return rs.sched.submissions_on(0) > before0 && rs.sched.submissions_on(1) > before1; }));
    // From a thread with no ring of its own.
    pair.server.close();
    const bool ended = wait_until([&] { return receive_done.load() && wait_done.load(); });
    CHECK(ended);
    // A request left on a ring close() did not cancel waits for the peer:
    // its close ends it, with no error.
    if (!ended) pair.client.close();
    while (!receive_done.load() || !wait_done.load()) std::this_thread::yield();
    CHECK(received.first == errc::operation_aborted);
    CHECK(waited.first == errc::operation_aborted);
}

namespace {

/// Holds a ring's thread inside one of its handlers, so that the requests
/// the handler started stay queued, not yet submitted (the ring submits its
/// queue once the handler returns), while the test acts from another thread.
struct held_ring {
    std::atomic<bool> holding{false};
    std::atomic<bool> released{false};
};

/// Posts to ring `index` a handler that runs `start` and then holds the
/// thread until `held.released`.
template <class Start>
void hold_ring(uring::scheduler& s, unsigned index, held_ring& held, Start start)
{
    struct step : uring::operation {
        step(held_ring& h, Start f) noexcept : operation(&step::run), held(h), start(std::move(f)) {}
        static void run(operation* base, std::uintptr_t, std::uint32_t) noexcept
        {
            auto* self = static_cast<step*>(base);
            self->start();
            self->held.holding.store(true);
            while (!self->held.released.load()) std::this_thread::yield();
            delete self;
        }
        held_ring& held;
        Start start;
    };
    s.work_started();
    s.post_to(index, new step(held, std::move(start)));
}

/// Whether descriptor number `fd` is open in this process.
bool number_taken(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

} // namespace

TEST_CASE("requests started in one turn reach the kernel in one system call", "[uring]")
{
    running_uring_scheduler rs(1);
    auto pair = connect_pair(rs.sched);
    constexpr std::size_t n = 16;
    std::string unused;
    std::array<recv_result, n> results{};
    std::array<std::atomic<bool>, n> done{};
    std::uint64_t enters_before = 0;
    std::uint64_t submitted_before = 0;
    on_ring(rs.sched, 0, [&] {
        enters_before = rs.sched.enters_on(0);
        submitted_before = rs.sched.submissions_on(0);
        for (std::size_t i = 0; i < n; ++i) {
            await_on<uring::stream_wait_op>(rs.sched, pair.server, unused, results[i], done[i], {});
        }
    });
    REQUIRE(wait_until([&] { return rs.sched.submissions_on(0) >= submitted_before + n; }));
    // One call submits the 16 (with the wait that follows it); a second
    // may come from the wake-up that ran the handler. One a request would
    // be 16.
    const std::uint64_t enters = rs.sched.enters_on(0) - enters_before;
    CHECK(enters >= 1);
    CHECK(enters <= 2);
    const std::string one = "x";
    auto [sent_ec, sent] = portico::sync_wait(send<1>(rs.sched, pair.client, portico::buffer(one)));
    REQUIRE_FALSE(sent_ec);
    REQUIRE(wait_until([&] {
        for (auto& d : done)
            if (!d.load()) return false;
        return true;
    }));
    for (const auto& r : results) CHECK_FALSE(r.first);
}

namespace {

/// A receive on the server side of a connected pair, started in a handler on
/// the one ring's thread and held there, still queued (held_ring), until
/// release(). `then` runs in the same handler, right after the start.
struct queued_receive {
    explicit queued_receive(portico::stop_token token = {}, std::function<void(queued_receive&)> then = {})
    {
        hold_ring(rs.sched, 0, held, [this, token, then = std::move(then)] {
            await_on<uring::stream_recv_op<1>>(rs.sched, pair.server, in, result, done, token);
            if (then) then(*this);
        });
        REQUIRE(wait_until([&] { return held.holding.load(); }));
    }

    /// Lets the ring submit; returns whether the receive then ended. If it
    /// did not, `unstick` and the peer's close end it (with no error).
    template <class Unstick>
    bool release(Unstick unstick)
    {
        held.released.store(true);
        const bool ended = wait_until([&] { return done.load(); });
        if (!ended) {
            unstick();
            pair.client.close();
        }
        while (!done.load()) std::this_thread::yield();
        return ended;
    }
    bool release()
    {
        return release([] {});
    }

    running_uring_scheduler rs{1};
    connected pair = connect_pair(rs.sched);
    std::string in = std::string(8, '\0');
    recv_result result;
    std::atomic<bool> done{false};
    held_ring held;
};

} // namespace

TEST_CASE("a close from another thread while the receive is still queued ends it, and keeps its number until the "
          "ring has submitted",
          "[uring]")
{
    queued_receive q;
    const int fd = q.pair.server.get();
    q.pair.server.close();
    // Were the number free now, the next socket would get it, and the queued
    // receive would be submitted on that socket.
    const bool kept = number_taken(fd);
    int fresh[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fresh) == 0);
    const std::string other = "other";
    REQUIRE(::write(fresh[1], other.data(), other.size()) == static_cast<ssize_t>(other.size()));
    // A receive left on the new socket ends with its peer.
    CHECK(q.release([&] { (void)::close(std::exchange(fresh[1], -1)); }));
    CHECK(kept);
    CHECK(fresh[0] != fd);
    CHECK(q.result.first == errc::operation_aborted);
    // The ring closes it once its queue is submitted and cancelled.
    CHECK(wait_until([&] { return !number_taken(fd); }));
    // The new socket's bytes are all still there.
    std::string got(other.size(), '\0');
    CHECK(::recv(fresh[0], got.data(), got.size(), MSG_DONTWAIT) == static_cast<ssize_t>(other.size()));
    CHECK(got == other);
    (void)::close(fresh[0]);
    if (fresh[1] >= 0) (void)::close(fresh[1]);
}

TEST_CASE("a stop from another thread while the receive is still queued ends it", "[uring]")
{
    portico::stop_source stop;
    queued_receive q(stop.get_token());
    // The stop's cancel finds nothing in the kernel yet.
    stop.request_stop();
    CHECK(q.release());
    CHECK(q.result.first == errc::operation_aborted);
}

TEST_CASE("cancel() from another thread while the receive is still queued ends it; the socket stays usable", "[uring]")
{
    queued_receive q;
    q.pair.server.cancel(q.rs.sched);
    const bool ended = q.release();
    CHECK(ended);
    CHECK(q.result.first == errc::operation_aborted);
    if (!ended) return;
    const std::string hello = "hello";
    auto [sent_ec, sent] = portico::sync_wait(send<1>(q.rs.sched, q.pair.client, portico::buffer(hello)));
    REQUIRE_FALSE(sent_ec);
    std::string again(5, '\0');
    auto [ec, got] = portico::sync_wait(receive<1>(q.rs.sched, q.pair.server, portico::buffer(again)));
    CHECK_FALSE(ec);
    CHECK(again == hello);
}

TEST_CASE("a close or a stop on the ring's own thread right after the receive was queued ends it", "[uring]")
{
    SECTION("a stop")
    {
        portico::stop_source stop;
        queued_receive q(stop.get_token(), [&](queued_receive&) { stop.request_stop(); });
        CHECK(q.release());
        CHECK(q.result.first == errc::operation_aborted);
    }
    SECTION("a close")
    {
        queued_receive q({}, [](queued_receive& self) { self.pair.server.close(); });
        CHECK(q.release());
        CHECK(q.result.first == errc::operation_aborted);
    }
}

namespace {

/// A coroutine whose frame the caller owns and destroys (portico's frame
/// allocation, so a pending operation's destructor can leave the block to
/// the operation's completion).
struct owned_frame {
    struct promise_type : portico::detail::frame_allocation {
        owned_frame get_return_object() noexcept { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> handle;
};

owned_frame receive_once(uring::scheduler& s, const uring::socket_handle& h, std::string& in)
{
    auto result = co_await awaited<uring::stream_recv_op<1>>(h.ref(s), portico::buffer(in));
    (void)result;
}

} // namespace

TEST_CASE("a frame destroyed on another thread while its receive is still queued: the receive is cancelled", "[uring]")
{
    running_uring_scheduler rs(1);
    auto pair = connect_pair(rs.sched);
    std::string in(8, '\0');
    // Only the fixture's own count, once connect_pair's completions have
    // all returned (each count ends after the resumption it made).
    REQUIRE(wait_until([&] { return rs.sched.outstanding() == 1; }));
    const std::int64_t before = 1;
    held_ring held;
    owned_frame frame{};
    hold_ring(rs.sched, 0, held, [&] { frame = receive_once(rs.sched, pair.server, in); });
    REQUIRE(wait_until([&] { return held.holding.load(); }));
    // The handler's step and the receive.
    CHECK(rs.sched.outstanding() == before + 2);
    // From this thread, with the request still queued: the operation's
    // cancel finds nothing in the kernel yet, and the frame's block waits
    // for the completion.
    frame.handle.destroy();
    held.released.store(true);
    // The receive's count ends with its completion, which frees the block.
    const bool ended = wait_until([&] { return rs.sched.outstanding() == before; });
    CHECK(ended);
    if (!ended) pair.client.close(); // ends the receive (0 bytes), which frees the block
    CHECK(wait_until([&] { return rs.sched.outstanding() == before; }));
}
