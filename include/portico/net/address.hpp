// portico: IPv4 and IPv6 addresses — values, parsing and formatting.
#pragma once

#include <portico/config.hpp>
#include <portico/error.hpp>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

PORTICO_NAMESPACE_BEGIN

namespace detail {

constexpr int hex_digit(char c) noexcept
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// Parses a decimal number of at most `max_digits` digits, no sign, no
/// leading zero (except "0" itself), not above `max`. Advances `pos`.
constexpr bool parse_decimal(std::string_view text, std::size_t& pos, std::uint32_t max, int max_digits,
                             std::uint32_t& out) noexcept
{
    const std::size_t start = pos;
    std::uint64_t value = 0; // ten digits overflow 32 bits
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && static_cast<int>(pos - start) < max_digits) {
        value = value * 10 + static_cast<std::uint64_t>(text[pos] - '0');
        ++pos;
    }
    const std::size_t digits = pos - start;
    if (digits == 0 || value > max) return false;
    if (digits > 1 && text[start] == '0') return false; // "01" could be read as octal: refuse it
    if (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') return false;
    out = static_cast<std::uint32_t>(value);
    return true;
}

} // namespace detail

/// An IPv4 address. A regular value type: copy, compare, hash.
/// Thread safety: immutable once built.
class address_v4 {
public:
    /// The four bytes of an address, in network order.
    using bytes_type = std::array<std::uint8_t, 4>;

    /// 0.0.0.0.
    constexpr address_v4() noexcept = default;
    /// From the four bytes in network order ({127, 0, 0, 1}).
    constexpr explicit address_v4(const bytes_type& bytes) noexcept : bytes_(bytes) {}
    /// From a number in host order (0x7F000001 is 127.0.0.1).
    constexpr explicit address_v4(std::uint32_t value) noexcept
        : bytes_{static_cast<std::uint8_t>(value >> 24), static_cast<std::uint8_t>(value >> 16),
                 static_cast<std::uint8_t>(value >> 8), static_cast<std::uint8_t>(value)}
    {}

    /// 0.0.0.0, the unspecified address.
    static constexpr address_v4 any() noexcept { return address_v4{}; }
    /// 127.0.0.1.
    static constexpr address_v4 loopback() noexcept { return address_v4{0x7F000001u}; }
    /// 255.255.255.255, the limited broadcast address.
    static constexpr address_v4 broadcast() noexcept { return address_v4{0xFFFFFFFFu}; }

    /// The four bytes, in network order.
    [[nodiscard]] constexpr bytes_type to_bytes() const noexcept { return bytes_; }
    /// The address as a number in host order.
    [[nodiscard]] constexpr std::uint32_t to_uint() const noexcept
    {
        return (std::uint32_t{bytes_[0]} << 24) | (std::uint32_t{bytes_[1]} << 16) | (std::uint32_t{bytes_[2]} << 8) |
               std::uint32_t{bytes_[3]};
    }

    /// True for 0.0.0.0.
    [[nodiscard]] constexpr bool is_unspecified() const noexcept { return to_uint() == 0; }
    /// In 127.0.0.0/8.
    [[nodiscard]] constexpr bool is_loopback() const noexcept { return bytes_[0] == 127; }
    /// In 224.0.0.0/4.
    [[nodiscard]] constexpr bool is_multicast() const noexcept { return (bytes_[0] & 0xF0) == 0xE0; }

    /// Parses dotted-decimal text ("192.168.0.10"): exactly four parts, each
    /// 0-255, no leading zeros, nothing else. Errors: errc::bad_address.
    static io_result<address_v4> parse(std::string_view text) noexcept
    {
        std::size_t pos = 0;
        address_v4 result;
        if (!parse_part(text, pos, result) || pos != text.size()) return {make_error_code(errc::bad_address), {}};
        return {{}, result};
    }

    /// Dotted-decimal text.
    [[nodiscard]] std::string to_string() const
    {
        std::string out;
        out.reserve(15);
        for (std::size_t i = 0; i < 4; ++i) {
            if (i != 0) out += '.';
            out += std::to_string(bytes_[i]);
        }
        return out;
    }

    /// Orders by the bytes in network order, that is as to_uint() does; == and
    /// != come with it.
    friend constexpr auto operator<=>(const address_v4&, const address_v4&) noexcept = default;

private:
    friend class address_v6;

    // Parses dotted-decimal at `pos` (used for the IPv4 tail of IPv6 text too).
    static constexpr bool parse_part(std::string_view text, std::size_t& pos, address_v4& out) noexcept
    {
        bytes_type bytes{};
        for (std::size_t i = 0; i < 4; ++i) {
            if (i != 0) {
                if (pos >= text.size() || text[pos] != '.') return false;
                ++pos;
            }
            std::uint32_t part = 0;
            if (!detail::parse_decimal(text, pos, 255, 3, part)) return false;
            bytes[i] = static_cast<std::uint8_t>(part);
        }
        out = address_v4{bytes};
        return true;
    }

    bytes_type bytes_{};
};

/// An IPv6 address with an optional scope (zone) id. A regular value type:
/// copy, compare, hash (std::hash, over the bytes and the scope id).
/// Thread safety: immutable once built.
class address_v6 {
public:
    /// The sixteen bytes of an address, in network order.
    using bytes_type = std::array<std::uint8_t, 16>;

    /// ::
    constexpr address_v6() noexcept = default;
    /// From the sixteen bytes in network order and a scope id (0: none).
    constexpr explicit address_v6(const bytes_type& bytes, std::uint32_t scope_id = 0) noexcept
        : bytes_(bytes), scope_id_(scope_id)
    {}

    /// ::, the unspecified address.
    static constexpr address_v6 any() noexcept { return address_v6{}; }
    /// ::1, the loopback address (scope id 0).
    static constexpr address_v6 loopback() noexcept
    {
        bytes_type b{};
        b[15] = 1;
        return address_v6{b};
    }
    /// The IPv4-mapped form \::ffff:a.b.c.d of an IPv4 address.
    static constexpr address_v6 v4_mapped(const address_v4& v4) noexcept
    {
        bytes_type b{};
        b[10] = 0xFF;
        b[11] = 0xFF;
        const auto four = v4.to_bytes();
        for (std::size_t i = 0; i < 4; ++i) b[12 + i] = four[i];
        return address_v6{b};
    }

    /// The sixteen bytes, in network order (the scope id is not among them).
    [[nodiscard]] constexpr bytes_type to_bytes() const noexcept { return bytes_; }
    /// The scope (zone) id; 0 for none.
    [[nodiscard]] constexpr std::uint32_t scope_id() const noexcept { return scope_id_; }

    /// True for :: with no scope id.
    [[nodiscard]] constexpr bool is_unspecified() const noexcept { return *this == address_v6{}; }
    /// True for ::1, whatever the scope id.
    [[nodiscard]] constexpr bool is_loopback() const noexcept { return bytes_ == loopback().bytes_; }
    /// In ff00::/8.
    [[nodiscard]] constexpr bool is_multicast() const noexcept { return bytes_[0] == 0xFF; }
    /// In fe80::/10.
    [[nodiscard]] constexpr bool is_link_local() const noexcept
    {
        return bytes_[0] == 0xFE && (bytes_[1] & 0xC0) == 0x80;
    }
    /// In \::ffff:0:0/96.
    [[nodiscard]] constexpr bool is_v4_mapped() const noexcept
    {
        for (std::size_t i = 0; i < 10; ++i) {
            if (bytes_[i] != 0) return false;
        }
        return bytes_[10] == 0xFF && bytes_[11] == 0xFF;
    }
    /// The IPv4 address of an IPv4-mapped address. Throws std::logic_error if
    /// is_v4_mapped() is false.
    [[nodiscard]] address_v4 to_v4() const
    {
        if (!is_v4_mapped()) throw std::logic_error("portico::address_v6::to_v4: not an IPv4-mapped address");
        return address_v4{address_v4::bytes_type{bytes_[12], bytes_[13], bytes_[14], bytes_[15]}};
    }

    /// Parses RFC 4291 text: eight groups of 1-4 hex digits separated by
    /// colons, at most one "::" standing for one or more zero groups, an
    /// optional dotted IPv4 tail ("::ffff:10.0.0.1") and an optional numeric
    /// scope ("fe80::1%3"). No brackets, no port. Errors: errc::bad_address.
    static io_result<address_v6> parse(std::string_view text) noexcept
    {
        const auto bad = io_result<address_v6>{make_error_code(errc::bad_address), {}};
        std::uint32_t scope = 0;
        if (const auto percent = text.find('%'); percent != std::string_view::npos) {
            std::size_t pos = percent + 1;
            // Zone ids are numeric here: names need the OS and belong to a resolver.
            if (!detail::parse_decimal(text, pos, 0xFFFFFFFFu, 10, scope) || pos != text.size()) return bad;
            text = text.substr(0, percent);
        }

        std::array<std::uint16_t, 8> words{};
        std::size_t count = 0;   // groups parsed
        std::ptrdiff_t gap = -1; // index in words where "::" stands
        std::size_t pos = 0;
        if (text.starts_with("::")) {
            gap = 0;
            pos = 2;
        } else if (text.starts_with(":")) {
            return bad;
        }
        while (pos < text.size()) {
            // An IPv4 tail: a group followed by '.' before the next ':'.
            const auto next_colon = text.find(':', pos);
            const auto dot = text.find('.', pos);
            if (dot != std::string_view::npos && (next_colon == std::string_view::npos || dot < next_colon)) {
                address_v4 tail;
                if (count > 6 || !address_v4::parse_part(text, pos, tail) || pos != text.size()) return bad;
                const auto b = tail.to_bytes();
                words[count++] = static_cast<std::uint16_t>((b[0] << 8) | b[1]);
                words[count++] = static_cast<std::uint16_t>((b[2] << 8) | b[3]);
                break;
            }
            std::uint32_t word = 0;
            std::size_t digits = 0;
            while (pos < text.size() && digits < 5 && detail::hex_digit(text[pos]) >= 0) {
                word = word * 16 + static_cast<std::uint32_t>(detail::hex_digit(text[pos]));
                ++pos;
                ++digits;
            }
            if (digits == 0 || digits > 4 || count == 8) return bad;
            words[count++] = static_cast<std::uint16_t>(word);
            if (pos == text.size()) break;
            if (text[pos] != ':') return bad;
            ++pos;
            if (pos < text.size() && text[pos] == ':') {
                if (gap >= 0) return bad; // a second "::"
                gap = static_cast<std::ptrdiff_t>(count);
                ++pos;
            } else if (pos == text.size()) {
                return bad; // a trailing single ':'
            }
        }
        if (gap < 0 ? count != 8 : count > 7) return bad;

        bytes_type bytes{};
        const std::size_t zeros = 8 - count;
        std::size_t out = 0;
        for (std::size_t i = 0; i < count; ++i) {
            if (gap >= 0 && i == static_cast<std::size_t>(gap)) out += zeros;
            bytes[2 * out] = static_cast<std::uint8_t>(words[i] >> 8);
            bytes[2 * out + 1] = static_cast<std::uint8_t>(words[i]);
            ++out;
        }
        return {{}, address_v6{bytes, scope}};
    }

    /// Canonical text (RFC 5952): lower-case hex without leading zeros, the
    /// longest run of two or more zero groups (the first, on a tie) as "::",
    /// IPv4-mapped addresses with a dotted tail, then "%scope" if any.
    [[nodiscard]] std::string to_string() const
    {
        std::string out;
        if (is_v4_mapped()) {
            out = "::ffff:" + to_v4().to_string();
        } else {
            std::array<std::uint16_t, 8> words{};
            for (std::size_t i = 0; i < 8; ++i) {
                words[i] = static_cast<std::uint16_t>((bytes_[2 * i] << 8) | bytes_[2 * i + 1]);
            }
            std::size_t best_start = 8;
            std::size_t best_length = 1; // a single zero group is never compressed
            for (std::size_t i = 0; i < 8;) {
                if (words[i] != 0) {
                    ++i;
                    continue;
                }
                std::size_t j = i;
                while (j < 8 && words[j] == 0) ++j;
                if (j - i > best_length) {
                    best_start = i;
                    best_length = j - i;
                }
                i = j;
            }
            constexpr char hex[] = "0123456789abcdef";
            for (std::size_t i = 0; i < 8; ++i) {
                if (i == best_start) {
                    out += "::";
                    i += best_length - 1;
                    continue;
                }
                if (!out.empty() && out.back() != ':') out += ':';
                bool leading = true;
                for (int shift = 12; shift >= 0; shift -= 4) {
                    const int nibble = (words[i] >> shift) & 0xF;
                    if (leading && nibble == 0 && shift != 0) continue;
                    leading = false;
                    out += hex[nibble];
                }
            }
        }
        if (scope_id_ != 0) out += '%' + std::to_string(scope_id_);
        return out;
    }

    /// Orders by the bytes in network order, then by scope id; == and != come
    /// with it (so addresses differing only in scope id are not equal).
    friend constexpr auto operator<=>(const address_v6&, const address_v6&) noexcept = default;

private:
    bytes_type bytes_{};
    std::uint32_t scope_id_ = 0;
};

/// An IPv4 or an IPv6 address. A regular value type: copy, compare, hash
/// (std::hash); IPv4 orders before IPv6. Thread safety: immutable once built.
class address {
public:
    /// 0.0.0.0.
    constexpr address() noexcept = default;
    /// Holds an IPv4 address (an implicit conversion).
    constexpr address(const address_v4& v4) noexcept : v4_(v4) {}
    /// Holds an IPv6 address (an implicit conversion).
    constexpr address(const address_v6& v6) noexcept : v6_(v6), is_v6_(true) {}

    /// True if it holds an IPv4 address.
    [[nodiscard]] constexpr bool is_v4() const noexcept { return !is_v6_; }
    /// True if it holds an IPv6 address.
    [[nodiscard]] constexpr bool is_v6() const noexcept { return is_v6_; }

    /// The IPv4 address. Throws std::logic_error if is_v4() is false.
    [[nodiscard]] address_v4 to_v4() const
    {
        if (is_v6_) throw std::logic_error("portico::address::to_v4: an IPv6 address");
        return v4_;
    }
    /// The IPv6 address. Throws std::logic_error if is_v6() is false.
    [[nodiscard]] address_v6 to_v6() const
    {
        if (!is_v6_) throw std::logic_error("portico::address::to_v6: an IPv4 address");
        return v6_;
    }

    /// As address_v4::is_unspecified() or address_v6::is_unspecified(), for
    /// the address held.
    [[nodiscard]] constexpr bool is_unspecified() const noexcept
    {
        return is_v6_ ? v6_.is_unspecified() : v4_.is_unspecified();
    }
    /// As address_v4::is_loopback() or address_v6::is_loopback(), for the
    /// address held.
    [[nodiscard]] constexpr bool is_loopback() const noexcept { return is_v6_ ? v6_.is_loopback() : v4_.is_loopback(); }
    /// As address_v4::is_multicast() or address_v6::is_multicast(), for the
    /// address held.
    [[nodiscard]] constexpr bool is_multicast() const noexcept
    {
        return is_v6_ ? v6_.is_multicast() : v4_.is_multicast();
    }

    /// Parses IPv4 dotted-decimal or IPv6 text (see address_v4::parse and
    /// address_v6::parse). Never touches DNS. Errors: errc::bad_address.
    static io_result<address> parse(std::string_view text) noexcept
    {
        if (text.find(':') == std::string_view::npos) {
            auto [ec, v4] = address_v4::parse(text);
            return {ec, address{v4}};
        }
        auto [ec, v6] = address_v6::parse(text);
        return {ec, address{v6}};
    }

    /// The text of the address held (address_v4::to_string() or
    /// address_v6::to_string()).
    [[nodiscard]] std::string to_string() const { return is_v6_ ? v6_.to_string() : v4_.to_string(); }

    /// Equal when both hold the same family and equal addresses (for IPv6, the
    /// scope id included).
    friend constexpr bool operator==(const address& a, const address& b) noexcept
    {
        return a.is_v6_ == b.is_v6_ && (a.is_v6_ ? a.v6_ == b.v6_ : a.v4_ == b.v4_);
    }
    /// Orders IPv4 before IPv6, then as the addresses held order.
    friend constexpr std::strong_ordering operator<=>(const address& a, const address& b) noexcept
    {
        if (a.is_v6_ != b.is_v6_) return a.is_v6_ ? std::strong_ordering::greater : std::strong_ordering::less;
        return a.is_v6_ ? a.v6_ <=> b.v6_ : a.v4_ <=> b.v4_;
    }

private:
    address_v4 v4_;
    address_v6 v6_;
    bool is_v6_ = false;
};

PORTICO_NAMESPACE_END

template <>
struct std::hash<portico::address_v4> {
    std::size_t operator()(const portico::address_v4& a) const noexcept
    {
        return std::hash<std::uint32_t>{}(a.to_uint());
    }
};

template <>
struct std::hash<portico::address_v6> {
    std::size_t operator()(const portico::address_v6& a) const noexcept
    {
        // FNV-1a over the bytes and the scope.
        std::uint64_t h = 14695981039346656037ull;
        for (auto byte : a.to_bytes()) h = (h ^ byte) * 1099511628211ull;
        h = (h ^ a.scope_id()) * 1099511628211ull;
        return static_cast<std::size_t>(h);
    }
};

template <>
struct std::hash<portico::address> {
    std::size_t operator()(const portico::address& a) const noexcept
    {
        return a.is_v6() ? std::hash<portico::address_v6>{}(a.to_v6()) : std::hash<portico::address_v4>{}(a.to_v4());
    }
};
