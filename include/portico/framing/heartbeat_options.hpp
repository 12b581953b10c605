// portico: heartbeat_options — a packet_stream's application heartbeat: when
// it asks the peer "are you alive?", what counts as an answer, and how long
// it waits for one.
#pragma once

#include <portico/config.hpp>
#include <portico/framing/packet_format.hpp>

#include <chrono>
#include <cstdint>

PORTICO_NAMESPACE_BEGIN

/// What a packet_stream's heartbeat accepts as a sign that the peer is alive.
enum class proof_of_life : unsigned char {
    /// Anything received: any packet, or part of one. The stream pings only
    /// when it has received nothing for an interval, so a peer that keeps
    /// talking is never pinged.
    any_packet,
    /// Only a pong that answers a ping of this stream's: a ping goes out
    /// every interval whatever else flows, and other packets (chat, moves)
    /// do not count. For a game whose client may keep a connection and its
    /// chat alive while its game loop is stuck: if the loop, not the
    /// library, answers pings (answer_pings false on the client), a stuck
    /// loop shows as a dead peer. A pong nobody asked for is no proof.
    pong_only,
};

/// A packet_stream's heartbeat (docs/design/heartbeat.md). A peer that
/// vanished without a FIN or a reset (power cut, pulled cable, NAT timeout)
/// leaves a connection that looks open forever: a zombie session. The
/// heartbeat asks the peer "are you alive?" with a ping, answers the peer's
/// pings with pongs, and closes a stream whose peer gave no sign of life for
/// `timeout` with heartbeat_timeout. Pings and pongs are header-only packets
/// of the two types named here, queued in order with the stream's other
/// packets. Both sides of a connection may run it.
///
/// A zero interval (the default) turns the heartbeat off. packet_stream's
/// constructor refuses inconsistent settings with std::invalid_argument
/// (see heartbeat_problem). A plain value.
struct heartbeat_options {
    /// With proof_of_life::any_packet, how long the stream may receive
    /// nothing before it pings; with pong_only, the time between pings.
    /// Zero: no heartbeat.
    std::chrono::milliseconds interval{0};
    /// How long the peer may give no sign of life while read_packet() waits
    /// before the stream closes with heartbeat_timeout; must be longer than
    /// the interval (two or three intervals leave room for a lost answer and
    /// the round trip). As for idle_timeout, time spent outside
    /// read_packet() does not count: a busy reader does not make its peer
    /// dead.
    std::chrono::milliseconds timeout{0};
    /// The packet type of a ping ("are you alive?"); must fit the format's
    /// type field and differ from pong_type.
    std::uint32_t ping_type = 0;
    /// The packet type of a pong (the answer).
    std::uint32_t pong_type = 0;
    /// True: the stream answers the peer's pings itself, and read_packet()
    /// never returns them; at most one pong goes out per 100 ms (or per half
    /// interval, if shorter), however fast pings arrive: a peer pinging at
    /// most every 100 ms has each ping answered, whatever its own interval.
    /// False: read_packet() returns pings to the
    /// caller, who answers them (with a packet of pong_type) or not. Pongs
    /// are never returned either way.
    bool answer_pings = true;
    /// What counts as a sign of life.
    proof_of_life proof = proof_of_life::any_packet;

    /// True if the heartbeat runs (a non-zero interval).
    [[nodiscard]] constexpr bool enabled() const noexcept { return interval.count() > 0; }
};

/// Why `heartbeat` cannot run on a stream of `format`, as a sentence, or
/// nullptr if it can (or is off and sets nothing else). packet_stream's
/// constructor throws std::invalid_argument with this text. Thread safety:
/// a pure function.
[[nodiscard]] constexpr const char* heartbeat_problem(const heartbeat_options& heartbeat,
                                                      const packet_format& format) noexcept
{
    if (heartbeat.interval.count() < 0 || heartbeat.timeout.count() < 0)
        return "heartbeat: the interval and the timeout cannot be negative";
    if (!heartbeat.enabled()) {
        return heartbeat.timeout.count() != 0 ? "heartbeat: a timeout is set but the interval is zero (off)" : nullptr;
    }
    if (heartbeat.timeout <= heartbeat.interval) return "heartbeat: the timeout must be longer than the interval";
    if (heartbeat.ping_type == heartbeat.pong_type) return "heartbeat: the ping and pong types must differ";
    if (format.type_bytes == 0) return "heartbeat: the packet format has no type field for pings and pongs";
    const std::uint64_t types = std::uint64_t{1} << (8 * format.type_bytes);
    if (heartbeat.ping_type >= types || heartbeat.pong_type >= types)
        return "heartbeat: the ping or pong type does not fit the format's type field";
    return nullptr;
}

PORTICO_NAMESPACE_END
