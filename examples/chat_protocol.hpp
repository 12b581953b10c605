// The protocol of chat_server and chat_client: portico's default packet
// header (u16 size counting the header, u16 type, little-endian), then a
// UTF-8 text body.
#pragma once

#include <portico/framing/heartbeat_options.hpp>
#include <portico/framing/packet.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace chat {

// snippet-begin: types
enum type : std::uint16_t {
    join = 1,      // client -> server: the nickname; must be the first packet
    say = 2,       // client -> server: a line of text
    welcome = 10,  // server -> the newcomer: how many others are in the room
    joined = 11,   // server -> everyone else: a nickname
    left = 12,     // server -> everyone else: a nickname
    message = 13,  // server -> everyone, sender included: "nickname: text"
    shutdown = 14, // server -> everyone: the server is going down
    refused = 15,  // server -> one client: why its join or line was refused
    ping = 16,     // either way: "are you alive?" (header only; the heartbeat)
    pong = 17,     // either way: "yes", the answer to a ping
};
// snippet-end: types

// snippet-begin: heartbeat
// The heartbeat both sides run, because a connection is never to be trusted:
// a peer that vanished without a FIN or a reset (a pulled cable, a power
// cut, a NAT that forgot the connection) leaves a session that looks open
// forever, a zombie. With nothing received for `interval`, the stream asks
// "are you alive?" (a ping); with no sign of life for `timeout`, it closes
// with heartbeat_timeout. Each side answers the other's pings by itself, and
// while lines flow, nothing is sent for it.
inline portico::heartbeat_options heartbeat(std::chrono::milliseconds interval = std::chrono::seconds(10),
                                            std::chrono::milliseconds timeout = std::chrono::seconds(30))
{
    return {.interval = interval, .timeout = timeout, .ping_type = ping, .pong_type = pong};
}
// snippet-end: heartbeat

// snippet-begin: limits
// What the server accepts: a nickname of 1 to 32 bytes and lines of up to
// 1,000 bytes, neither with control characters (they would reach other
// users' terminals and the server's log). Anything else is answered with a
// `refused` packet saying why, never dropped in silence.
inline constexpr std::size_t max_nickname = 32;
inline constexpr std::size_t max_line = 1000;

/// True if `s` holds no control character: no C0 byte (below 0x20), no DEL,
/// and no C1 control in UTF-8 (U+0080 to U+009F, bytes C2 80 to C2 9F), which
/// terminals also read as escapes.
inline bool printable(std::string_view s) noexcept
{
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7F) return false;
        if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F &&
            static_cast<unsigned char>(s[i + 1]) >= 0x80) {
            return false;
        }
    }
    return true;
}
// snippet-end: limits

/// A packet's body as text (a view into the receive buffer).
inline std::string_view text(const portico::packet& p) noexcept
{
    return {reinterpret_cast<const char*>(p.body.data()), p.body.size()};
}

} // namespace chat
