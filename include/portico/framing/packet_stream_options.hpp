// portico: packet_stream_options — the format and the limits of a
// packet_stream.
#pragma once

#include <portico/config.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/framing/send_queue_limits.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

PORTICO_NAMESPACE_BEGIN

/// How a packet_stream frames and guards its stream. Every limit that trips
/// closes only this stream, with its own error (see packet_stream).
struct packet_stream_options {
    /// The header of every packet, and the largest packet accepted or sent.
    packet_format format{};
    /// Initial size of the receive ring (it grows for a larger packet once
    /// that packet's header passed the size check).
    std::size_t receive_buffer = 4096;
    /// How quiet a peer must be for the stream to wait for it holding no
    /// receive ring. A stream whose last two waits for the peer each ended
    /// within park_after is busy: it receives straight into its ring, one
    /// system call per receive. Any other (a new stream, or one whose peer
    /// paused longer) parks when its ring is empty: it gives the ring back
    /// and waits for the next bytes with a receive of zero bytes
    /// (tcp_socket::wait_readable), then takes a ring and reads what
    /// arrived: no buffer held while idle, one more system call per
    /// wake-up. A busy stream whose peer then stops keeps its ring until
    /// the peer's next bytes (a heartbeat bounds that). Zero: never park.
    /// Only for streams that can wait without reading and have a clock
    /// (parkable_stream and timed_stream: tcp_socket).
    std::chrono::milliseconds park_after{1000};
    /// Watermarks and overflow policy of the send queue.
    send_queue_limits send{};
    /// The longest one packet may take to arrive, from the moment its first
    /// bytes are waited on to its last byte; bytes trickling in do not
    /// extend it (slowloris). Tripping it closes the stream with timed_out.
    /// Zero: no limit.
    std::chrono::milliseconds packet_timeout{0};
    /// The longest the peer may send nothing while read_packet() waits.
    /// Tripping it closes the stream with idle_timeout. Zero: no limit.
    std::chrono::milliseconds idle_timeout{0};
    /// The most packets per second the peer may send, averaged, with bursts
    /// of up to this many. Going over closes the stream with rate_limited.
    /// Zero: no limit.
    std::uint32_t max_packets_per_second = 0;
};

PORTICO_NAMESPACE_END
