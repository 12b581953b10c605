#include <portico/framing/stream_concepts.hpp>

#include <portico/buffer.hpp>
#include <portico/coro/task.hpp>
#include <portico/error.hpp>

#include "support/catch.hpp"
#include "support/mock_stream.hpp"

#include <cstddef>
#include <span>

using portico::readable_stream;
using portico::timed_stream;
using portico::writable_stream;
using portico::test::mock_stream;

namespace {

/// Reads only: no write_some, no context().
struct read_only_stream {
    portico::task<portico::io_result<std::size_t>> read_some(std::span<portico::mutable_buffer>)
    {
        co_return portico::io_result<std::size_t>{make_error_code(portico::errc::eof), 0};
    }
};

} // namespace

TEST_CASE("stream concepts: the mock stream reads, writes and has a clock; a read-only stream only reads",
          "[stream_concepts]")
{
    STATIC_REQUIRE(readable_stream<mock_stream>);
    STATIC_REQUIRE(writable_stream<mock_stream>);
    STATIC_REQUIRE(timed_stream<mock_stream>);
    STATIC_REQUIRE(readable_stream<read_only_stream>);
    STATIC_REQUIRE_FALSE(writable_stream<read_only_stream>);
    STATIC_REQUIRE_FALSE(timed_stream<read_only_stream>);
    STATIC_REQUIRE_FALSE(readable_stream<int>);
}
