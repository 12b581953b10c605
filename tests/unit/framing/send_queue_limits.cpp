#include <portico/framing/send_queue_limits.hpp>

#include "support/catch.hpp"

TEST_CASE("send_queue_limits: 1 MiB high, 256 KiB low watermark, writers suspend by default", "[send_queue_limits]")
{
    const portico::send_queue_limits limits;
    CHECK(limits.high_watermark == 1024 * 1024);
    CHECK(limits.low_watermark == 256 * 1024);
    CHECK(limits.policy == portico::overflow_policy::suspend);
    // Designated initializers name what they change, as the docs show.
    const portico::send_queue_limits strict{.high_watermark = 1000, .policy = portico::overflow_policy::disconnect};
    CHECK(strict.low_watermark == 256 * 1024);
    CHECK(strict.policy == portico::overflow_policy::disconnect);
}
