// portico: endpoint — an address and a port.
#pragma once

#include <portico/config.hpp>
#include <portico/error.hpp>
#include <portico/net/address.hpp>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

PORTICO_NAMESPACE_BEGIN

/// An IP address and a port: where a socket is bound or connected.
/// A regular value type: copy, compare, hash (std::hash). Thread safety:
/// immutable once built.
class endpoint {
public:
    /// 0.0.0.0:0.
    constexpr endpoint() noexcept = default;
    /// `addr` with `port` (a number in host order, such as 80).
    constexpr endpoint(const address& addr, std::uint16_t port) noexcept : address_(addr), port_(port) {}

    /// The address.
    [[nodiscard]] constexpr const address& addr() const noexcept { return address_; }
    /// The port, in host order.
    [[nodiscard]] constexpr std::uint16_t port() const noexcept { return port_; }
    /// True for an IPv4 address.
    [[nodiscard]] constexpr bool is_v4() const noexcept { return address_.is_v4(); }
    /// True for an IPv6 address.
    [[nodiscard]] constexpr bool is_v6() const noexcept { return address_.is_v6(); }

    /// Parses "a.b.c.d:port" or "[ipv6]:port" (the brackets are required for
    /// IPv6, so "::1:80" is refused rather than guessed at). The port is
    /// decimal, 0-65535. Never touches DNS. Errors: errc::bad_address.
    static io_result<endpoint> parse(std::string_view text) noexcept
    {
        const auto bad = io_result<endpoint>{make_error_code(errc::bad_address), {}};
        std::string_view host;
        std::string_view port_text;
        if (text.starts_with('[')) {
            const auto close = text.find(']');
            if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return bad;
            host = text.substr(1, close - 1);
            port_text = text.substr(close + 2);
        } else {
            const auto colon = text.find(':');
            if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos) return bad;
            host = text.substr(0, colon);
            port_text = text.substr(colon + 1);
        }
        std::size_t pos = 0;
        std::uint32_t port = 0;
        if (!detail::parse_decimal(port_text, pos, 65535, 5, port) || pos != port_text.size()) return bad;

        if (text.starts_with('[')) {
            auto [ec, v6] = address_v6::parse(host);
            if (ec) return bad;
            return {{}, endpoint{v6, static_cast<std::uint16_t>(port)}};
        }
        auto [ec, v4] = address_v4::parse(host);
        if (ec) return bad;
        return {{}, endpoint{v4, static_cast<std::uint16_t>(port)}};
    }

    /// "a.b.c.d:port" or "[ipv6]:port"; parse(to_string()) gives back the
    /// same endpoint.
    [[nodiscard]] std::string to_string() const
    {
        const std::string port = std::to_string(port_);
        if (address_.is_v6()) return '[' + address_.to_string() + "]:" + port;
        return address_.to_string() + ':' + port;
    }

    /// Equal when the addresses and the ports are.
    friend constexpr bool operator==(const endpoint&, const endpoint&) noexcept = default;
    /// Orders by address (IPv4 before IPv6), then by port.
    friend constexpr std::strong_ordering operator<=>(const endpoint& a, const endpoint& b) noexcept
    {
        if (auto c = a.address_ <=> b.address_; c != 0) return c;
        return a.port_ <=> b.port_;
    }

private:
    address address_;
    std::uint16_t port_ = 0;
};

PORTICO_NAMESPACE_END

template <>
struct std::hash<portico::endpoint> {
    std::size_t operator()(const portico::endpoint& e) const noexcept
    {
        return std::hash<portico::address>{}(e.addr()) * 31u + e.port();
    }
};
