// portico: packet_stream — read_packet() over any byte stream.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/task.hpp>
#include <portico/error.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/framing/receive_ring.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// What packet_stream needs of a stream: `read_some` of a span of
/// mutable_buffers, awaitable, yielding io_result<size_t> with eof at the
/// end (tcp_socket; a mock stream in tests).
template <class S>
concept readable_stream = requires(S& s, std::span<mutable_buffer> buffers) {
    { s.read_some(buffers) } -> awaitable;
};

/// Framed packets over a byte stream.
///
/// read_packet() yields the next packet as a view into the stream's receive
/// ring: no copy and no allocation in the common case. The receive ring is
/// filled by one scatter read into its free space, so a burst of small
/// packets costs one read.
///
/// Thread safety: one read_packet() at a time.
template <class Stream>
    requires readable_stream<Stream>
class packet_stream {
public:
    /// Frames `stream` with `format` (which must be valid()); the receive
    /// ring starts at `initial_buffer` bytes and grows for a larger packet
    /// once its header passed the size check.
    explicit packet_stream(Stream stream, packet_format format = {}, std::size_t initial_buffer = 4096)
        : stream_(std::move(stream)), format_(format),
          ring_(initial_buffer < format.header_size() ? format.header_size() : initial_buffer)
    {}

    /// The underlying stream.
    [[nodiscard]] Stream& next_layer() noexcept { return stream_; }
    /// The packet format.
    [[nodiscard]] const packet_format& format() const noexcept { return format_; }

    /// Reads the next packet. Its body stays valid until the next
    /// read_packet(). Errors:
    ///   eof               the stream ended cleanly between packets;
    ///   packet_truncated  the stream ended inside a packet;
    ///   packet_too_large, packet_malformed  from the header, before its body
    ///                     is read or anything allocated;
    ///   anything the stream reports (connection_reset, operation_aborted...).
    /// After an error the stream should be closed. Allocates one coroutine
    /// frame (recycled; see docs/design/frames.md).
    [[nodiscard]] task<io_result<packet>> read_packet()
    {
        // The previous packet's bytes are released only now: its view was
        // valid until this call.
        ring_.consume(std::exchange(pending_, 0));
        for (;;) {
            auto [ec, next] = next_packet(format_, ring_);
            if (ec) co_return io_result<packet>{ec, {}};
            if (next) {
                pending_ = packet_size(format_, *next);
                co_return io_result<packet>{{}, *next};
            }
            std::array<mutable_buffer, 2> regions;
            auto [read_ec, n] = co_await stream_.read_some(ring_.prepare(regions));
            if (read_ec) {
                if (read_ec == errc::eof && ring_.size() != 0) read_ec = make_error_code(errc::packet_truncated);
                co_return io_result<packet>{read_ec, {}};
            }
            ring_.commit(n);
        }
    }

private:
    Stream stream_;
    packet_format format_;
    receive_ring ring_;
    std::size_t pending_ = 0;
};

PORTICO_NAMESPACE_END
