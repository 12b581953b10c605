// The protocol of file_server and file_client: an upload, as in the course
// notes' file transfer (파일 송/수신), framed by portico's default packet header
// (u16 size counting the header, u16 type, little-endian).
//
//   client                                  server
//   file_header {u64 size, name}   ---->    checks name and size, claims NAME
//                                  <----    ready            (or result: refused)
//   data {bytes}, 60 KiB each      ---->    appends to NAME.part, adds to its CRC-32
//   end {u32 crc32}                ---->    reads NAME.part back, compares size and
//                                           CRC-32, replaces NAME with it
//                                  <----    result {status, u64 bytes, u32 crc32, message}
//
// Every integer is little-endian. A connection may carry several uploads, one
// after another; the client closes it when it is done. The server sets the
// deadlines (a header within seconds of connecting or of the last result, no
// silence during an upload) and the largest size it accepts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace file_proto {

// snippet-begin: types
enum type : std::uint16_t {
    file_header = 1, // client -> server: u64 size, then the file name (UTF-8, no directories)
    data = 2,        // client -> server: the next 1..max_chunk bytes of the content
    end = 3,         // client -> server: u32 CRC-32 of the whole content; no data follows
    ready = 10,      // server -> client: the header is accepted, send the content (empty body)
    result = 11,     // server -> client: u8 status, u64 bytes, u32 CRC-32, message (see result_fields)
};

enum class status : std::uint8_t {
    stored = 0,            // NAME now holds the content: read back, its size and CRC-32 matched
    bad_name = 1,          // refused: not a plain file name (the message says why)
    busy = 2,              // refused: that file is being uploaded, or is in use on the server
    storage_error = 3,     // the server could not write, verify or replace the file
    size_mismatch = 4,     // the content ended before (or went past) the announced size
    checksum_mismatch = 5, // the content arrived, but its CRC-32 is not the sender's
    protocol_error = 6,    // an unexpected or malformed packet
    too_large = 7,         // refused: the announced size is above the server's maximum
};
// snippet-end: types

/// The largest data body: 60 KiB, under the default format's 64 KiB packet
/// limit (which counts the 4-byte header).
inline constexpr std::size_t max_chunk = 60 * 1024;
/// The longest name accepted, in bytes. Leaves room for ".part" within the
/// 255 characters Windows and most file systems allow.
inline constexpr std::size_t max_name = 200;

/// A packet's body as text (a view into the receive buffer).
inline std::string_view text(std::span<const std::byte> bytes) noexcept
{
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Fixed-width little-endian fields, so the wire format does not depend on the
// machine (the notes' warning about endianness).
template <std::size_t N>
std::array<std::byte, N> put_le(std::uint64_t v) noexcept
{
    std::array<std::byte, N> out{};
    for (std::size_t i = 0; i < N; ++i) out[i] = static_cast<std::byte>(v >> (8 * i));
    return out;
}

inline std::uint64_t get_le(std::span<const std::byte> in) noexcept
{
    std::uint64_t v = 0;
    for (std::size_t i = in.size(); i-- > 0;) v = (v << 8) | std::to_integer<std::uint64_t>(in[i]);
    return v;
}

struct header_fields {
    std::uint64_t size;
    std::string_view name; // a view into the packet body
};

/// file_header's body: 8 bytes of size, then the name.
inline std::optional<header_fields> parse_header(std::span<const std::byte> body) noexcept
{
    if (body.size() < 8) return std::nullopt;
    return header_fields{get_le(body.first(8)), text(body.subspan(8))};
}

/// result's body. For `stored`, `bytes` and `crc` describe the file as the
/// server read it back from its disk; otherwise what it had received.
struct result_fields {
    status code;
    std::uint64_t bytes;
    std::uint32_t crc;
    std::string message;
};

/// result's fixed part (the message text follows it in the same packet).
inline std::array<std::byte, 13> result_prefix(status code, std::uint64_t bytes, std::uint32_t crc) noexcept
{
    std::array<std::byte, 13> out{};
    out[0] = static_cast<std::byte>(code);
    const auto n = put_le<8>(bytes);
    const auto c = put_le<4>(crc);
    for (std::size_t i = 0; i < 8; ++i) out[1 + i] = n[i];
    for (std::size_t i = 0; i < 4; ++i) out[9 + i] = c[i];
    return out;
}

inline std::optional<result_fields> parse_result(std::span<const std::byte> body)
{
    if (body.size() < 13 || std::to_integer<unsigned>(body[0]) > static_cast<unsigned>(status::too_large)) {
        return std::nullopt;
    }
    return result_fields{static_cast<status>(body[0]), get_le(body.subspan(1, 8)),
                         static_cast<std::uint32_t>(get_le(body.subspan(9, 4))), std::string(text(body.subspan(13)))};
}

// snippet-begin: crc32
/// Entry i: the remainder of byte i divided by the (bit-reversed) polynomial.
constexpr std::array<std::uint32_t, 256> crc32_table() noexcept
{
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t r = i;
        for (int bit = 0; bit < 8; ++bit) r = (r & 1u) != 0 ? (r >> 1) ^ 0xEDB88320u : r >> 1;
        t[i] = r;
    }
    return t;
}

/// CRC-32 as zip, gzip, PNG and Ethernet compute it (IEEE 802.3: polynomial
/// 0x04C11DB7 bit-reversed to 0xEDB88320, initial value and final xor
/// 0xFFFFFFFF), one table lookup per byte. Any tool that prints a file's
/// CRC-32 (7-Zip, Python's zlib.crc32) gives the same value. It detects
/// accidents (every burst of up to 32 flipped bits, any odd number of them),
/// not tampering: it is not a cryptographic hash.
class crc32 {
public:
    constexpr void update(std::span<const unsigned char> bytes) noexcept
    {
        for (const unsigned char b : bytes) state_ = table_[(state_ ^ b) & 0xFFu] ^ (state_ >> 8);
    }
    void update(std::span<const std::byte> bytes) noexcept
    {
        update({reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()});
    }
    [[nodiscard]] constexpr std::uint32_t value() const noexcept { return ~state_; }

private:
    static constexpr std::array<std::uint32_t, 256> table_ = crc32_table();
    std::uint32_t state_ = 0xFFFFFFFFu;
};

// The standard check value: CRC-32 of the nine bytes "123456789".
static_assert([] {
    constexpr std::array<unsigned char, 9> digits{'1', '2', '3', '4', '5', '6', '7', '8', '9'};
    crc32 c;
    c.update(digits);
    return c.value();
}() == 0xCBF43926u);
// snippet-end: crc32

} // namespace file_proto
