#include <portico/framing/heartbeat_options.hpp>

#include <portico/coro/sync_wait.hpp>
#include <portico/framing/packet_stream.hpp>

#include "support/catch.hpp"
#include "support/mock_stream.hpp"

#include <chrono>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
using portico::heartbeat_options;
using portico::heartbeat_problem;
using portico::packet_format;

namespace {

heartbeat_options sound() { return {.interval = 10s, .timeout = 30s, .ping_type = 7, .pong_type = 8}; }

bool says(const char* problem, const char* words)
{
    return problem != nullptr && std::strstr(problem, words) != nullptr;
}

} // namespace

TEST_CASE("heartbeat_options: off by default, the stream answers pings, any packet is a sign of life",
          "[heartbeat_options]")
{
    const heartbeat_options o;
    CHECK_FALSE(o.enabled());
    CHECK(o.answer_pings);
    CHECK(o.proof == portico::proof_of_life::any_packet);
    CHECK(heartbeat_problem(o, packet_format{}) == nullptr);
    CHECK(sound().enabled());
    CHECK(heartbeat_problem(sound(), packet_format{}) == nullptr);
    STATIC_REQUIRE(heartbeat_problem(heartbeat_options{}, packet_format{}) == nullptr); // usable at compile time
}

TEST_CASE("heartbeat_problem names what is wrong with a heartbeat", "[heartbeat_options]")
{
    auto o = sound();
    o.timeout = o.interval;
    CHECK(says(heartbeat_problem(o, packet_format{}), "longer than the interval"));
    o = sound();
    o.pong_type = o.ping_type;
    CHECK(says(heartbeat_problem(o, packet_format{}), "must differ"));
    o = sound();
    o.ping_type = 256;
    CHECK(says(heartbeat_problem(o, packet_format{.type_bytes = 1}), "does not fit"));
    CHECK(heartbeat_problem(o, packet_format{.type_bytes = 2}) == nullptr);
    o.ping_type = 0xFFFFFFFF; // the widest type field takes any value
    CHECK(heartbeat_problem(o, packet_format{.type_bytes = 4}) == nullptr);
    CHECK(says(heartbeat_problem(sound(), packet_format{.type_bytes = 0}), "no type field"));
    o = sound();
    o.interval = -1s;
    CHECK(says(heartbeat_problem(o, packet_format{}), "negative"));
    // A timeout without an interval would be a heartbeat silently off.
    o = heartbeat_options{};
    o.timeout = 30s;
    CHECK(says(heartbeat_problem(o, packet_format{}), "interval is zero"));
}

namespace {

/// A stream the packet_stream can read but not write.
struct read_only_stream {
    portico::test::mock_stream inner;
    auto read_some(std::span<portico::mutable_buffer> buffers) { return inner.read_some(buffers); }
    portico::test::manual_timers& context() const noexcept { return inner.context(); }
};

/// A stream with no clock.
struct clockless_stream {
    portico::test::mock_stream inner;
    auto read_some(std::span<portico::mutable_buffer> buffers) { return inner.read_some(buffers); }
    template <class Sequence>
    auto write_some(const Sequence& buffers)
    {
        return inner.write_some(buffers);
    }
};

} // namespace

TEST_CASE("a packet_stream refuses a heartbeat it cannot run: std::invalid_argument at construction, "
          "invalid_argument from read_packet on a stream without a clock",
          "[heartbeat_options]")
{
    using portico::packet_stream;
    using portico::test::mock_stream;
    auto bad = sound();
    bad.timeout = 5s;
    try {
        packet_stream<mock_stream> ps(mock_stream{}, {.heartbeat = bad});
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()) == heartbeat_problem(bad, packet_format{}));
    }
    CHECK_THROWS_AS(packet_stream<read_only_stream>(read_only_stream{}, {.heartbeat = sound()}), std::invalid_argument);
    CHECK_NOTHROW(packet_stream<read_only_stream>(read_only_stream{}, portico::packet_stream_options{}));

    packet_stream<clockless_stream> clockless(clockless_stream{}, {.heartbeat = sound()});
    auto [ec, p] = portico::sync_wait(clockless.read_packet());
    CHECK(ec == portico::errc::invalid_argument);
}
