// Printing bytes that came from the network: a nickname, a file name, a
// datagram, a server's message. Printed raw, they reach the terminal or the
// log as they are: a newline forges a whole log line, an escape sequence
// moves the cursor, clears the screen or retitles the window.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace example {

/// `bytes` made safe to print as part of one line: printable ASCII (0x20 to
/// 0x7E) as it is, a backslash as "\\", every other byte as "\xNN" (two
/// lower-case hex digits). At most `limit` bytes of the input are shown;
/// if there were more, "..." follows.
///
/// Every byte above 0x7E is escaped too, valid UTF-8 included: "Ärger" shows
/// as "\xc3\x84rger". That is the safe, simple choice: no C1 control
/// (U+0080 to U+009F, which some terminals obey), no right-to-left override,
/// no invisible or look-alike character and no invalid UTF-8 reaches the
/// output, and the rule needs no Unicode table. A program that must show
/// non-ASCII text as text has to decode it and allow only the code points it
/// trusts. The backslash is escaped so that "\x0a" in the output can only
/// mean a byte 0x0a, never the four characters a peer sent.
inline std::string escaped(std::string_view bytes, std::size_t limit = 200)
{
    constexpr std::string_view hex = "0123456789abcdef";
    const std::string_view shown = bytes.substr(0, limit);
    std::string out;
    out.reserve(shown.size() + 3);
    for (const char c : shown) {
        const auto b = static_cast<unsigned char>(c);
        if (b == '\\') {
            out += "\\\\";
        } else if (b >= 0x20 && b <= 0x7E) {
            out += c;
        } else {
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 0xFu];
        }
    }
    if (bytes.size() > limit) out += "...";
    return out;
}

} // namespace example
