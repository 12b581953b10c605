// chat_server's room (examples/chat_room.hpp) through cycles of a full room
// that empties at once: what it keeps afterwards, and how high the heap
// went while everyone left (docs/design/memory.md). Live C++ heap bytes are
// counted by support/counting_new.cpp, for every operator new in the
// process, the test's own clients included.
#include <portico/frame_cache.hpp>
#include <portico/framing/packet_stream.hpp>
#include <portico/net/tcp_acceptor.hpp>
#include <portico/net/tcp_socket.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>

#include "examples/chat_room.hpp"

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/heap_counter.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

using portico::address_v4;
using portico::endpoint;
using portico::io_context;
using portico::packet_stream;
using portico::task;
using portico::tcp_acceptor;
using portico::tcp_socket;

namespace {

// The heap as support/counting_new.cpp counts it; not at all under TSan,
// whose operator new cannot be replaced: there the heap checks say so.
#if defined(PORTICO_TEST_COUNTS_ALLOCATIONS)
constexpr bool heap_counted = true;
std::size_t live_heap() { return portico::test::live_heap_bytes(); }
std::size_t peak_heap() { return portico::test::peak_live_heap_bytes(); }
void reset_peak_heap() { portico::test::reset_peak_live_heap(); }
#else
constexpr bool heap_counted = false;
std::size_t live_heap() { return 0; }
std::size_t peak_heap() { return 0; }
void reset_peak_heap() {}
#endif

struct tally {
    std::atomic<unsigned> entered{0};
    std::atomic<unsigned> left{0};
    // Notices the clients read: "joined" while the room fills, then "left".
    std::atomic<std::uint64_t> joined_heard{0};
};

/// chat_server's session once the member has joined (the nickname packet
/// and its checks are left out: they hold nothing): in the room until its
/// client goes, then out, and the others are told.
task<> member_session(tcp_socket s, chat::room& room, unsigned id, tally& t)
{
    auto m = std::make_shared<chat::member>(chat::member{
        packet_stream<tcp_socket>(std::move(s), chat::member_options(chat::heartbeat())), "user" + std::to_string(id)});
    (void)room.enter(m);
    ++t.entered;
    for (;;) {
        auto [ec, p] = co_await m->stream.read_packet();
        if (ec) break;
    }
    room.leave(*m);
    ++t.left;
}

task<> accept_members(tcp_acceptor& acceptor, unsigned n, portico::task_group& sessions, chat::room& room, tally& t)
{
    for (unsigned i = 0; i < n; ++i) {
        auto [ec, s] = co_await acceptor.accept();
        if (ec) co_return;
        sessions.spawn(member_session(std::move(s), room, i, t));
    }
}

/// A chat client: reads what the room sends until its group is stopped,
/// then closes its connection (with the room's later notices unread).
task<> listener(io_context& ctx, endpoint server, tally& t)
{
    tcp_socket s(ctx);
    auto [ec] = co_await s.connect(server);
    if (ec) co_return;
    // As chat_client: it answers the server's heartbeat.
    packet_stream<tcp_socket> ps(std::move(s), portico::packet_stream_options{.heartbeat = chat::heartbeat()});
    for (;;) {
        auto [read_ec, p] = co_await ps.read_packet();
        if (read_ec) co_return;
        if (p.type == chat::joined) ++t.joined_heard;
    }
}

/// Gives the pool turns until `done()`, for at most two minutes (then the
/// checks that follow fail and say what was left).
template <class Done>
task<> until(io_context& ctx, Done done)
{
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    while (!done() && std::chrono::steady_clock::now() < give_up) co_await ctx.schedule();
}

/// What one cycle left and how high the heap went.
struct cycle_result {
    unsigned entered = 0;
    unsigned left = 0;
    std::size_t room_after = 0;
    // Live heap bytes outside the frame cache once every session ended.
    std::size_t live_after = 0;
    // Live heap bytes in the full, quiet room (every notice read).
    std::size_t full = 0;
    // The highest the live heap went above `full` while everyone left.
    std::size_t leave_peak = 0;
    unsigned long handles = 0;
    std::string handle_names; // for a failure message
    std::ptrdiff_t live_frames = 0;
};

/// N members join (each announced to those before it), every notice is
/// read, then all N clients close at once and the room empties.
task<cycle_result> fill_and_empty(io_context& ctx, tcp_acceptor& acceptor, chat::room& room, unsigned n,
                                  unsigned long idle_handles)
{
    const endpoint server = acceptor.local_endpoint().value();
    // What is in flight between cycles: the acceptor's pool of accepts.
    const std::int64_t idle_work = ctx.statistics().outstanding;
    // Frames alive between cycles, this one's own included.
    const std::ptrdiff_t idle_frames = portico::debug::live_frames();
    tally t;
    portico::task_group sessions;
    portico::task_group clients;
    sessions.spawn(accept_members(acceptor, n, sessions, room, t));
    for (unsigned i = 0; i < n; ++i) clients.spawn(listener(ctx, server, t));
    // Member k hears of the n - 1 - k who came after it.
    const std::uint64_t all_joins = std::uint64_t{n} * (n - 1) / 2;
    co_await until(ctx, [&] { return t.entered == n && t.joined_heard == all_joins; });
    cycle_result r;
    r.full = live_heap();
    reset_peak_heap();
    clients.request_stop();
    co_await clients.join();
    co_await sessions.join();
    r.leave_peak = peak_heap() - r.full;
    // NOTE: each stream's heartbeat watchdog ends when its sleep's
    // cancellation comes back through the port, after the stream is gone;
    // and a frame that resumed this coroutine (the last session's, the last
    // client's) is freed only once the thread that ran it returns from it,
    // which on a pool of four may be after this coroutine has moved on to
    // another thread. A stream's socket closes with the last of what holds
    // the stream, which may be later still (a native run saw one socket of
    // 800 open for a moment after the work and the frames had settled). So
    // wait for the work, the frames and the handles themselves (the `+ 1`s:
    // the turn this runs in, and until's own frame). One that never goes
    // keeps this waiting two minutes, and the checks after the cycle fail.
    co_await until(ctx, [&] {
        return ctx.statistics().outstanding <= idle_work + 1 && portico::debug::live_frames() <= idle_frames + 1 &&
               portico::test::process_handles() <= idle_handles;
    });
    r.entered = t.entered;
    r.left = t.left;
    r.room_after = room.member_count();
    co_return r;
}

} // namespace

PORTICO_CO_TEST_CASE("the chat room keeps nothing and grows by nothing per cycle of 400 members joining, then "
                     "all leaving at once",
                     "[chat_room][scale]")
{
    // Every join is announced to everyone before: 79,800 notices per cycle
    // (1,000 members would make 499,500, minutes under Wine).
    constexpr unsigned n = 400;
    tcp_acceptor acceptor(ctx);
    REQUIRE_FALSE(acceptor.listen(endpoint{address_v4::loopback(), 0}).error());
    chat::room room;
    const std::size_t live_before = live_heap() - portico::frame_cache_bytes();
    const unsigned long handles_before = portico::test::process_handles();
    const std::string handle_names_before = portico::test::process_handle_names();
    const std::ptrdiff_t frames_before = portico::debug::live_frames();
    std::array<cycle_result, 3> cycles{};
    for (std::size_t c = 0; c < cycles.size(); ++c) {
        cycles[c] = co_await fill_and_empty(ctx, acceptor, room, n, handles_before);
        // Measured here, where the cycle's own frame is gone too.
        cycles[c].live_after = live_heap() - portico::frame_cache_bytes();
        cycles[c].handles = portico::test::process_handles();
        cycles[c].handle_names = portico::test::process_handle_names();
        cycles[c].live_frames = portico::debug::live_frames();
        INFO("cycle " << c);
        CHECK(cycles[c].entered == n);
        CHECK(cycles[c].left == n);
        CHECK(cycles[c].room_after == 0);
        // Every socket closed and every session's frame gone.
        INFO("handles before:\n" << handle_names_before << "after:\n" << cycles[c].handle_names);
        CHECK(cycles[c].handles <= handles_before); // (fewer: one was on its way out at the start)
        CHECK(cycles[c].live_frames == frames_before);
    }
    for (std::size_t c = 0; c < cycles.size(); ++c) {
        UNSCOPED_INFO("cycle " << c << ": live heap in the full room " << cycles[c].full << " bytes; at most "
                               << cycles[c].leave_peak << " above that while all left; after "
                               << static_cast<long long>(cycles[c].live_after - live_before)
                               << " above the start (frame cache aside)");
    }
    if (!heap_counted) {
        WARN("the heap is not counted in this build (TSan)");
        co_return;
    }
    // A few KiB of the first cycle may stay (the room's vector keeps its
    // capacity); nothing more stays after a second and a third.
    constexpr std::size_t slack = 16 * 1024;
    CHECK(cycles[0].live_after <= live_before + 64 * 1024);
    CHECK(cycles[1].live_after <= cycles[0].live_after + slack);
    CHECK(cycles[2].live_after <= cycles[0].live_after + slack);
}
