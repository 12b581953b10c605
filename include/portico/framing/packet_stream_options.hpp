// portico: packet_stream_options — the format and the limits of a
// packet_stream.
#pragma once

#include <portico/config.hpp>
#include <portico/framing/heartbeat_options.hpp>
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
    /// Watermarks and overflow policy of the send queue.
    send_queue_limits send{};
    /// The longest one packet may take to arrive, from the moment its first
    /// bytes are waited on to its last byte; bytes trickling in do not
    /// extend it (slowloris). Tripping it closes the stream with timed_out.
    /// Zero: no limit.
    std::chrono::milliseconds packet_timeout{0};
    /// The longest the peer may send nothing while read_packet() waits.
    /// Tripping it closes the stream with idle_timeout. Zero: no limit.
    /// With a heartbeat, pings and pongs are not activity: a peer that only
    /// answers pings is alive but idle (an away-from-keyboard player).
    std::chrono::milliseconds idle_timeout{0};
    /// The most packets per second the peer may send, averaged, with bursts
    /// of up to this many (pings and pongs count). Going over closes the
    /// stream with rate_limited. Zero: no limit.
    std::uint32_t max_packets_per_second = 0;
    /// The application heartbeat that finds a peer gone without a FIN or a
    /// reset (a zombie session): pings when the peer is silent, answers its
    /// pings, closes with heartbeat_timeout. Off by default.
    heartbeat_options heartbeat{};
};

PORTICO_NAMESPACE_END
