// portico: packet_format — the size+type header of a framed protocol, and
// its sans-I/O encoding and decoding.
#pragma once

#include <portico/config.hpp>
#include <portico/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

PORTICO_NAMESPACE_BEGIN

/// Byte order of the header fields.
enum class byte_order : unsigned char { little, big };

/// The header that starts every packet: a size field, then a type field.
///
/// The default is the classic game-server header: a 2-byte size counting the
/// whole packet (header included), then a 2-byte type, both little-endian,
/// and packets of at most 64 KiB - 1 (the largest a 2-byte size can say).
/// A plain value; thread safety as for any value.
struct packet_format {
    /// Width of the size field in bytes: 2 or 4.
    unsigned size_bytes = 2;
    /// Width of the type field in bytes: 0 (no type), 1, 2 or 4.
    unsigned type_bytes = 2;
    /// Byte order of both fields.
    byte_order order = byte_order::little;
    /// True: the size counts the whole packet, header included. False: the
    /// size counts only the body.
    bool size_includes_header = true;
    /// The largest whole packet (header included) accepted or sent. A peer
    /// announcing more is rejected from its header, before anything is
    /// allocated or read.
    std::size_t max_packet_size = 64 * 1024;

    /// Bytes of the header: size_bytes + type_bytes.
    [[nodiscard]] constexpr std::size_t header_size() const noexcept { return size_bytes + type_bytes; }

    /// True if the widths are ones listed above and max_packet_size holds at
    /// least a header.
    [[nodiscard]] constexpr bool valid() const noexcept
    {
        const bool size_ok = size_bytes == 2 || size_bytes == 4;
        const bool type_ok = type_bytes == 0 || type_bytes == 1 || type_bytes == 2 || type_bytes == 4;
        return size_ok && type_ok && max_packet_size >= header_size();
    }

    /// The largest whole packet this format can actually carry: the smaller
    /// of max_packet_size and what the size field can express.
    [[nodiscard]] constexpr std::size_t largest_packet() const noexcept
    {
        const std::uint64_t field_max = size_bytes == 2 ? 0xFFFFu : 0xFFFFFFFFu;
        const std::uint64_t expressible = size_includes_header ? field_max : field_max + header_size();
        return expressible < max_packet_size ? static_cast<std::size_t>(expressible) : max_packet_size;
    }
};

/// What a header says.
struct packet_header {
    /// The packet's type (0 when the format has no type field).
    std::uint32_t type = 0;
    /// Bytes of body that follow the header.
    std::size_t body_size = 0;
};

namespace detail {

constexpr std::uint32_t load_uint(const std::byte* p, unsigned width, byte_order order) noexcept
{
    std::uint32_t v = 0;
    for (unsigned i = 0; i < width; ++i) {
        const unsigned shift = order == byte_order::little ? 8 * i : 8 * (width - 1 - i);
        v |= static_cast<std::uint32_t>(std::to_integer<unsigned>(p[i])) << shift;
    }
    return v;
}

constexpr void store_uint(std::byte* p, unsigned width, byte_order order, std::uint32_t v) noexcept
{
    for (unsigned i = 0; i < width; ++i) {
        const unsigned shift = order == byte_order::little ? 8 * i : 8 * (width - 1 - i);
        p[i] = static_cast<std::byte>((v >> shift) & 0xFFu);
    }
}

} // namespace detail

/// Reads the header at the start of `bytes`, which must hold at least
/// format.header_size() bytes (invalid_argument otherwise, or if the format
/// is not valid()). Checks the size
/// before anything else is done with it:
///   packet_malformed  the size is smaller than the header (size counting
///                     the header), so no packet can be that small;
///   packet_too_large  the whole packet would exceed format.max_packet_size.
/// Never allocates.
[[nodiscard]] inline io_result<packet_header> decode_header(const packet_format& format,
                                                            std::span<const std::byte> bytes) noexcept
{
    if (!format.valid() || bytes.size() < format.header_size()) return {make_error_code(errc::invalid_argument), {}};
    const std::uint64_t size = detail::load_uint(bytes.data(), format.size_bytes, format.order);
    const std::uint32_t type = detail::load_uint(bytes.data() + format.size_bytes, format.type_bytes, format.order);
    const std::uint64_t header = format.header_size();
    if (format.size_includes_header && size < header) return {make_error_code(errc::packet_malformed), {}};
    const std::uint64_t whole = format.size_includes_header ? size : size + header;
    if (whole > format.max_packet_size) return {make_error_code(errc::packet_too_large), {}};
    return {{}, packet_header{type, static_cast<std::size_t>(whole - header)}};
}

/// Writes the header of a packet of `type` with `body_size` bytes of body
/// into the first format.header_size() bytes of `out`. Yields the header's
/// size. Errors: packet_too_large if the whole packet exceeds
/// format.largest_packet(); invalid_argument if `type` does not fit the type
/// field, `out` is too small or the format is not valid(). Never allocates.
[[nodiscard]] inline io_result<std::size_t> encode_header(const packet_format& format, std::uint32_t type,
                                                          std::size_t body_size, std::span<std::byte> out) noexcept
{
    const std::size_t header = format.header_size();
    if (!format.valid() || out.size() < header) return {make_error_code(errc::invalid_argument), 0};
    if (format.type_bytes < 4 && type >= (std::uint32_t{1} << (8 * format.type_bytes))) {
        return {make_error_code(errc::invalid_argument), 0};
    }
    if (body_size > format.largest_packet() - header) return {make_error_code(errc::packet_too_large), 0};
    const std::size_t size = format.size_includes_header ? body_size + header : body_size;
    detail::store_uint(out.data(), format.size_bytes, format.order, static_cast<std::uint32_t>(size));
    detail::store_uint(out.data() + format.size_bytes, format.type_bytes, format.order, type);
    return {{}, header};
}

PORTICO_NAMESPACE_END
