// The protocol of file_server and file_client: uploads and downloads, as in
// the course notes' file transfer (파일 송/수신), framed by portico's default
// packet header (u16 size counting the header, u16 type, little-endian).
//
// Upload:
//   client                                  server
//   file_header {u64 size, name}   ---->    checks name and size, claims NAME
//                                  <----    ready            (or result: refused)
//   data {bytes}, 60 KiB each      ---->    writes NAME.part (overlapped), hashes it
//   end {sha256}                   ---->    reads NAME.part back, compares size and
//                                           SHA-256, replaces NAME with it
//                                  <----    result {status, u64 bytes, sha256, message}
//
// Download (the client asks, as the notes want, instead of the server pushing):
//   get {name}                     ---->    checks the name, opens NAME for reading,
//                                           hashes it (overlapped reads)
//                                  <----    content {u64 size, sha256}, then `size` bytes
//                                           of the file outside any packet: one
//                                           transmit_file with this packet as its head
//                                           (or result: refused)
//
// Every integer is little-endian; a sha256 is its 32 bytes. A connection may
// carry several requests, one after another; the client closes it when it is
// done. The server sets the deadlines (a request within seconds of connecting
// or of the last answer, no silence during an upload) and the largest size
// it accepts.
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
    end = 3,         // client -> server: the SHA-256 of the whole content; no data follows
    get = 4,         // client -> server: the name of a file to download
    ready = 10,      // server -> client: the header is accepted, send the content (empty body)
    result = 11,     // server -> client: u8 status, u64 bytes, sha256, message (see result_fields)
    content = 12,    // server -> client: u64 size, sha256; the file's bytes follow, unframed
};

enum class status : std::uint8_t {
    stored = 0,            // NAME now holds the content: read back, its size and SHA-256 matched
    bad_name = 1,          // refused: not a plain file name (the message says why)
    busy = 2,              // refused: that file is being uploaded, or is in use on the server
    storage_error = 3,     // the server could not write, verify, replace or read the file
    size_mismatch = 4,     // the content ended before (or went past) the announced size
    checksum_mismatch = 5, // the content arrived, but its SHA-256 is not the sender's
    protocol_error = 6,    // an unexpected or malformed packet
    too_large = 7,         // refused: the announced size is above the server's maximum
    not_found = 8,         // refused: no file of that name to download
};
// snippet-end: types

/// A SHA-256, as it travels.
using digest = std::array<std::byte, 32>;

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

inline digest get_digest(std::span<const std::byte> in) noexcept
{
    digest d{};
    for (std::size_t i = 0; i < d.size() && i < in.size(); ++i) d[i] = in[i];
    return d;
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

/// result's body. For `stored`, `bytes` and `hash` describe the file as the
/// server read it back from its disk; otherwise what it had received.
struct result_fields {
    status code;
    std::uint64_t bytes;
    digest hash;
    std::string message;
};

/// result's fixed part (the message text follows it in the same packet).
inline constexpr std::size_t result_prefix_size = 1 + 8 + 32;

inline std::array<std::byte, result_prefix_size> result_prefix(status code, std::uint64_t bytes,
                                                               const digest& hash) noexcept
{
    std::array<std::byte, result_prefix_size> out{};
    out[0] = static_cast<std::byte>(code);
    const auto n = put_le<8>(bytes);
    for (std::size_t i = 0; i < 8; ++i) out[1 + i] = n[i];
    for (std::size_t i = 0; i < hash.size(); ++i) out[9 + i] = hash[i];
    return out;
}

inline std::optional<result_fields> parse_result(std::span<const std::byte> body)
{
    if (body.size() < result_prefix_size ||
        std::to_integer<unsigned>(body[0]) > static_cast<unsigned>(status::not_found)) {
        return std::nullopt;
    }
    return result_fields{static_cast<status>(body[0]), get_le(body.subspan(1, 8)), get_digest(body.subspan(9, 32)),
                         std::string(text(body.subspan(result_prefix_size)))};
}

/// content's body: the file's size and SHA-256.
inline constexpr std::size_t content_body_size = 8 + 32;

struct content_fields {
    std::uint64_t size;
    digest hash;
};

inline std::optional<content_fields> parse_content(std::span<const std::byte> body) noexcept
{
    if (body.size() != content_body_size) return std::nullopt;
    return content_fields{get_le(body.first(8)), get_digest(body.subspan(8))};
}

} // namespace file_proto
