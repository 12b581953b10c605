// portico: packet — one received packet: its type and a view of its body.
#pragma once

#include <portico/config.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

PORTICO_NAMESPACE_BEGIN

/// One packet as packet_stream::read_packet() yields it: the type field of
/// its header and a view of its body in the stream's receive buffer (no
/// copy). A plain value; the view's lifetime is the point: see body.
struct packet {
    /// The type field of the packet's header (0 when the format has none).
    std::uint32_t type = 0;
    /// The body's bytes, valid until the buffer they are in changes: for
    /// packet_stream, until the next read_packet().
    std::span<const std::byte> body;
};

PORTICO_NAMESPACE_END
