// portico: send_queue_limits — the watermarks of packet_stream's send queue,
// and what happens to a packet over them (overflow_policy).
#pragma once

#include <portico/config.hpp>

#include <chrono>
#include <cstddef>

PORTICO_NAMESPACE_BEGIN

/// What write_packet does with a packet that would take the send queue past
/// its high watermark.
enum class overflow_policy : unsigned char {
    /// The writer waits (suspended) until the queue has drained to the low
    /// watermark and its packet fits; writers are admitted in arrival order.
    suspend,
    /// write_packet fails at once with send_queue_full; nothing of the packet
    /// is sent and the stream stays open.
    fail,
    /// The stream is closed with send_queue_full: every pending and later
    /// operation on it fails with that error. For cutting off a slow consumer
    /// (a client that stopped reading) without slowing its writers down.
    disconnect,
};

/// Watermarks of a send queue, in bytes of packets (headers included)
/// accepted by write_packet and not yet taken by the kernel. A plain value.
struct send_queue_limits {
    /// A packet is accepted while the queue stays at or under this many
    /// bytes with it; a packet larger than the watermark is accepted only
    /// into an empty queue. So the queue never holds more than the larger of
    /// this and one packet.
    std::size_t high_watermark = 1024 * 1024;
    /// With the suspend policy: waiting writers are admitted again once the
    /// queue has drained to this many bytes (hysteresis, so writers wake in
    /// batches rather than one packet at a time).
    std::size_t low_watermark = 256 * 1024;
    /// What happens to a packet that does not fit.
    overflow_policy policy = overflow_policy::suspend;
    /// A grace for bursts: for up to grace_period after the queue first went
    /// over the high watermark, packets are still admitted while the queue
    /// stays within grace_bytes above it; the policy applies only to a
    /// packet that would go beyond that, or that arrives once the period has
    /// passed with the queue still over the watermark. Draining to the high
    /// watermark ends the grace (the next burst gets a new one). So a
    /// legitimate client that falls behind for a moment keeps its
    /// connection, while one that stopped reading is still cut off, and
    /// memory stays bounded by high_watermark + grace_bytes. The period is
    /// checked when a packet is queued (no timer). Both zero (the default):
    /// no grace.
    std::size_t grace_bytes = 0;
    /// See grace_bytes.
    std::chrono::milliseconds grace_period{0};
};

PORTICO_NAMESPACE_END
