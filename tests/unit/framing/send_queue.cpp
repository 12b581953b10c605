#include <portico/framing/detail/send_queue.hpp>

#include <portico/error.hpp>

#include "support/catch.hpp"

#include <array>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

using portico::const_buffer;
using portico::overflow_policy;
using portico::detail::resume_list;
using portico::detail::send_node;
using portico::detail::send_queue;
using state = portico::detail::resume_handshake::state;

namespace {

/// A node with a `header_size`-byte header of 'H' and a body of the given parts.
struct test_node {
    std::vector<std::string> parts;
    std::vector<const_buffer> buffers;
    send_node node;

    test_node(std::size_t header_size, std::vector<std::string> body) : parts(std::move(body))
    {
        for (const auto& p : parts) buffers.push_back(portico::buffer(p));
        node.header.fill(std::byte{'H'});
        node.header_size = header_size;
        node.body = buffers;
        node.size = header_size;
        for (const auto& p : parts) node.size += p.size();
    }
};

std::string flatten(std::span<const const_buffer> buffers)
{
    std::string out;
    for (const auto& b : buffers) out.append(static_cast<const char*>(b.data()), b.size());
    return out;
}

std::string gather_all(send_queue& q, std::size_t max = 64)
{
    std::array<const_buffer, 64> out;
    return flatten(std::span(out.data(), q.gather(std::span(out.data(), max))));
}

} // namespace

TEST_CASE("send_queue gathers queued packets in order, resuming inside a packet after a short write", "[send_queue]")
{
    send_queue q;
    test_node a(2, {"ab", "cd"}), b(2, {"efg"}), c(0, {"", "hi"});
    for (auto* n : {&a, &b, &c}) REQUIRE(q.admit(n->node) == send_queue::admission::queued);
    CHECK(q.queued_bytes() == 6 + 5 + 2);
    CHECK(gather_all(q) == "HHabcdHHefghi");

    resume_list done;
    q.consume(3, done); // "HHa"
    CHECK(gather_all(q) == "bcdHHefghi");
    q.consume(6, done); // "bcdHHe": a complete
    CHECK(a.node.handshake.load() == state::done);
    CHECK_FALSE(a.node.result);
    CHECK(q.queued_bytes() == 7);
    CHECK(gather_all(q) == "fghi");
    q.consume(4, done);
    CHECK_FALSE(q.has_unsent());
    CHECK(q.queued_bytes() == 0);
    CHECK(c.node.handshake.load() == state::done);
}

TEST_CASE("send_queue gathers at most the buffers it is given and continues from there", "[send_queue]")
{
    send_queue q;
    std::vector<std::string> parts;
    for (int i = 0; i < 100; ++i) parts.push_back(std::string(1, static_cast<char>('0' + i % 10)));
    test_node n(0, parts);
    REQUIRE(q.admit(n.node) == send_queue::admission::queued);
    std::array<const_buffer, 64> out;
    REQUIRE(q.gather(out) == 64);
    resume_list done;
    q.consume(64, done);
    CHECK(q.gather(out) == 36);
    q.consume(36, done);
    CHECK(n.node.handshake.load() == state::done);
}

TEST_CASE("send_queue admission: high watermark, arrival order, and drain to the low watermark", "[send_queue]")
{
    send_queue q({.high_watermark = 10, .low_watermark = 4, .policy = overflow_policy::suspend});
    test_node a(0, {"aaaaaa"}), b(0, {"bbbb"}), c(0, {"cc"}), d(0, {"d"}), big(0, {std::string(50, 'x')});
    CHECK(q.admit(a.node) == send_queue::admission::queued);
    CHECK(q.admit(b.node) == send_queue::admission::queued); // exactly at the watermark
    CHECK(q.admit(c.node) == send_queue::admission::blocked);
    // Fits by size, but queues behind the blocked one: arrival order holds.
    CHECK(q.admit(d.node) == send_queue::admission::blocked);
    CHECK(q.blocked_packets() == 2);

    resume_list done;
    gather_all(q);
    q.consume(6, done); // a done: 4 bytes left, at the low watermark: c and d admitted
    CHECK(q.blocked_packets() == 0);
    CHECK(q.queued_bytes() == 4 + 2 + 1);
    CHECK(gather_all(q) == "bbbbccd");
    q.consume(7, done);
    CHECK(q.queued_bytes() == 0);
    // A packet larger than the watermark goes into an empty queue.
    CHECK(q.admit(big.node) == send_queue::admission::queued);
    CHECK(q.peak_queued_bytes() == 50);
}

TEST_CASE("send_queue: fail and disconnect policies refuse instead of holding back", "[send_queue]")
{
    for (auto policy : {overflow_policy::fail, overflow_policy::disconnect}) {
        send_queue q({.high_watermark = 5, .low_watermark = 1, .policy = policy});
        test_node a(0, {"aaaa"}), b(0, {"bb"});
        CHECK(q.admit(a.node) == send_queue::admission::queued);
        CHECK(q.admit(b.node) == send_queue::admission::refused);
        CHECK(q.queued_bytes() == 4);
        CHECK(b.node.place == send_node::where::none);
    }
}

TEST_CASE("send_queue withdraw: held-back and not-yet-gathered packets only", "[send_queue]")
{
    send_queue q({.high_watermark = 8, .low_watermark = 2, .policy = overflow_policy::suspend});
    test_node a(0, {"aaaa"}), b(0, {"bbbb"}), c(0, {"cc"});
    q.admit(a.node);
    std::array<const_buffer, 1> one;
    REQUIRE(q.gather(one) == 1); // a is in the write now
    q.admit(b.node);
    CHECK(q.admit(c.node) == send_queue::admission::blocked);
    CHECK_FALSE(q.withdraw(a.node));
    CHECK(q.withdraw(c.node));
    CHECK(q.withdraw(b.node));
    CHECK(q.queued_bytes() == 4);
    CHECK(q.blocked_packets() == 0);
    // After a short write that did not reach it, a gathered packet can leave again.
    test_node d(0, {"dd"});
    q.admit(d.node);
    std::array<const_buffer, 2> two;
    REQUIRE(q.gather(two) == 2);
    resume_list done;
    q.consume(1, done);
    CHECK_FALSE(q.withdraw(a.node)); // partly written
    CHECK(q.withdraw(d.node));
}

TEST_CASE("send_queue fail_unsent keeps what is being written; fail_all takes everything", "[send_queue]")
{
    send_queue q({.high_watermark = 6, .low_watermark = 2, .policy = overflow_policy::suspend});
    test_node a(0, {"aaaa"}), b(0, {"bb"}), c(0, {"cccc"});
    q.admit(a.node);
    std::array<const_buffer, 1> one;
    REQUIRE(q.gather(one) == 1);
    q.admit(b.node);
    CHECK(q.admit(c.node) == send_queue::admission::blocked);
    resume_list done;
    const auto aborted = make_error_code(portico::errc::operation_aborted);
    q.fail_unsent(aborted, done);
    CHECK(b.node.result == portico::errc::operation_aborted);
    CHECK(c.node.result == portico::errc::operation_aborted);
    CHECK(a.node.handshake.load() == state::idle);
    CHECK(q.queued_bytes() == 4);
    q.fail_all(make_error_code(portico::errc::connection_reset), done);
    CHECK(a.node.result == portico::errc::connection_reset);
    CHECK_FALSE(q.has_unsent());
    CHECK(q.queued_bytes() == 0);
}

TEST_CASE("append_copy: copies fill the tail block, spill into new ones, and keep order with writers' nodes",
          "[send_queue]")
{
    using portico::detail::outbox_block;
    send_queue q;
    const std::string body(3000, 'x');
    const std::array<std::byte, 2> header{std::byte{'h'}, std::byte{'h'}};
    const std::array<const_buffer, 1> parts{portico::buffer(body)};
    for (int i = 0; i < 3; ++i) REQUIRE(q.append_copy(header, parts, 3002) == send_queue::admission::queued);
    test_node writer(2, {"writer"});
    REQUIRE(q.admit(writer.node) == send_queue::admission::queued);
    // A copy after a writer's node starts a block of its own.
    REQUIRE(q.append_copy(header, parts, 3002) == send_queue::admission::queued);
    CHECK(q.queued_bytes() == 4 * 3002 + 8);

    std::array<const_buffer, 64> out;
    const std::size_t count = q.gather(out);
    // 9,006 bytes of copies in blocks of 4,096, 4,096 and 814; the writer's
    // header and body; then the last copy in a block of its own.
    REQUIRE(count == 6);
    CHECK(out[0].size() == outbox_block::capacity);
    CHECK(out[1].size() == outbox_block::capacity);
    CHECK(out[2].size() == 3 * 3002 - 2 * outbox_block::capacity);
    CHECK(flatten(std::span(out.data() + 3, 2)) == "HHwriter");
    CHECK(out[5].size() == 3002);
    const std::string copy = "hh" + body;
    CHECK(flatten(std::span(out.data(), 3)) == copy + copy + copy);

    resume_list done;
    q.consume(q.queued_bytes(), done);
    CHECK(q.queued_bytes() == 0);
    CHECK_FALSE(q.has_unsent());
    CHECK(writer.node.handshake.load() == state::done);
}

TEST_CASE("append_copy is refused over the high watermark and behind held-back writers", "[send_queue]")
{
    send_queue q({.high_watermark = 100, .low_watermark = 50});
    const std::string body(46, 'x');
    const std::array<std::byte, 4> header{};
    const std::array<const_buffer, 1> parts{portico::buffer(body)};
    REQUIRE(q.append_copy(header, parts, 50) == send_queue::admission::queued);
    REQUIRE(q.append_copy(header, parts, 50) == send_queue::admission::queued);
    CHECK(q.append_copy(header, parts, 50) == send_queue::admission::refused);
    test_node waiting(2, {std::string(40, 'w')});
    REQUIRE(q.admit(waiting.node) == send_queue::admission::blocked);

    resume_list done;
    std::array<const_buffer, 64> out;
    q.gather(out);
    q.consume(50, done);
    // Both copies share one block, which counts until it is sent whole.
    CHECK(q.queued_bytes() == 100);
    CHECK(q.blocked_packets() == 1);
    q.consume(50, done); // drained: the writer is admitted
    CHECK(q.blocked_packets() == 0);
    CHECK(q.queued_bytes() == 42);
    // Room now, and nobody held back.
    CHECK(q.append_copy(header, parts, 50) == send_queue::admission::queued);
    CHECK(q.queued_bytes() == 92);
    resume_list failed;
    q.fail_all(make_error_code(portico::errc::operation_aborted), failed);
    CHECK(q.queued_bytes() == 0);
}
