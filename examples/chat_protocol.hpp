// The protocol of chat_server and chat_client: portico's default packet
// header (u16 size counting the header, u16 type, little-endian), then a
// UTF-8 text body.
#pragma once

#include <portico/framing/packet.hpp>

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
};
// snippet-end: types

/// A packet's body as text (a view into the receive buffer).
inline std::string_view text(const portico::packet& p) noexcept
{
    return {reinterpret_cast<const char*>(p.body.data()), p.body.size()};
}

} // namespace chat
