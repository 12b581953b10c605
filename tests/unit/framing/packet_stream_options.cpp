#include <portico/framing/packet_stream_options.hpp>

#include "support/catch.hpp"

#include <chrono>

TEST_CASE("packet_stream_options: the defaults are the documented ones, with no timeout and no rate limit",
          "[packet_stream_options]")
{
    const portico::packet_stream_options o;
    CHECK(o.format.header_size() == 4);
    CHECK(o.format.max_packet_size == 64 * 1024);
    CHECK(o.receive_buffer == 4096);
    CHECK(o.send.high_watermark == 1024 * 1024);
    CHECK(o.packet_timeout == std::chrono::milliseconds(0));
    CHECK(o.idle_timeout == std::chrono::milliseconds(0));
    CHECK(o.max_packets_per_second == 0);
}
