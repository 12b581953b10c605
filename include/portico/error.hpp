// portico: error model — portico::errc, its category, and io_result<T>.
#pragma once

#include <portico/config.hpp>

#include <cstddef>
#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Portable error conditions reported by portico operations.
///
/// Every raw platform error an operation can report is mapped, in one function
/// per operation family, to one of these values when one fits (unknown raw
/// values pass through in std::system_category). Each value compares equal to
/// the matching std::errc condition where one exists, so both
/// `ec == portico::errc::timed_out` and `ec == std::errc::timed_out` work.
/// Zero is never used: a default-constructed std::error_code means success.
enum class errc {
    /// The peer closed its side in an orderly way (a 0-byte read on a non-empty buffer).
    eof = 1,
    /// The operation was cancelled: stop requested, socket closed, or context stopped.
    operation_aborted,
    /// An operation's deadline passed before it completed.
    timed_out,
    /// The peer reset the connection (abortive close).
    connection_reset,
    /// Nothing listens at the remote endpoint.
    connection_refused,
    /// The connection was aborted by the local network stack.
    connection_aborted,
    /// The socket is not connected.
    not_connected,
    /// The local address is already in use.
    address_in_use,
    /// The remote network or host cannot be reached.
    network_unreachable,
    /// An argument was invalid (bad buffer, closed handle...).
    invalid_argument,
    /// Text that should name an address or endpoint does not
    /// ("300.1.1.1", "::1:80" without brackets, a port above 65535...).
    bad_address,
    /// The operation is not valid in the object's current state (e.g. after shutdown).
    bad_state,
    /// A packet header announced a size above the configured maximum.
    packet_too_large,
    /// A packet header announced a size smaller than the header itself.
    packet_malformed,
    /// The stream ended in the middle of a packet.
    packet_truncated,
    /// The send queue passed its high watermark and the policy is to fail or disconnect.
    send_queue_full,
    /// The peer sent more packets per second than the configured limit.
    rate_limited,
    /// The connection was idle longer than the configured idle timeout.
    idle_timeout,
    /// The system ran out of a resource (memory, buffers, handles).
    no_resources,
    /// A datagram was larger than the receive buffer: the buffer holds its
    /// start, the rest was dropped.
    datagram_truncated,
    /// Name resolution found no such host (or no address of the family asked for).
    host_not_found,
    /// Name resolution found no such service (port name).
    service_not_found,
    /// No file or directory of that name (or a directory on its path is missing).
    file_not_found,
    /// The file exists, and the open asked for a new one (file_creation::create_new).
    file_exists,
    /// The system refused the access asked for (permissions, a read-only file,
    /// a directory opened as a file).
    access_denied,
    /// Another handle holds the file without sharing it as asked (a sharing
    /// or lock violation).
    file_in_use,
    /// The disk (or the user's quota) has no room for the data.
    disk_full,
};

namespace detail {

class error_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "portico"; }

    std::string message(int value) const override
    {
        switch (static_cast<errc>(value)) {
        case errc::eof: return "end of stream";
        case errc::operation_aborted: return "operation aborted";
        case errc::timed_out: return "operation timed out";
        case errc::connection_reset: return "connection reset by peer";
        case errc::connection_refused: return "connection refused";
        case errc::connection_aborted: return "connection aborted";
        case errc::not_connected: return "socket is not connected";
        case errc::address_in_use: return "address already in use";
        case errc::network_unreachable: return "network unreachable";
        case errc::invalid_argument: return "invalid argument";
        case errc::bad_address: return "malformed address or endpoint text";
        case errc::bad_state: return "operation not valid in the current state";
        case errc::packet_too_large: return "packet larger than the configured maximum";
        case errc::packet_malformed: return "packet size smaller than its header";
        case errc::packet_truncated: return "stream ended inside a packet";
        case errc::send_queue_full: return "send queue above its high watermark";
        case errc::rate_limited: return "packet rate limit exceeded";
        case errc::idle_timeout: return "connection idle for too long";
        case errc::no_resources: return "out of system resources";
        case errc::datagram_truncated: return "datagram larger than the receive buffer (truncated)";
        case errc::host_not_found: return "host not found";
        case errc::service_not_found: return "service not found";
        case errc::file_not_found: return "no such file or directory";
        case errc::file_exists: return "file already exists";
        case errc::access_denied: return "access denied";
        case errc::file_in_use: return "file in use without sharing";
        case errc::disk_full: return "no space left on the disk";
        }
        return "unknown portico error";
    }

    // NOTE: this is what makes `ec == std::errc::x` true for our codes.
    std::error_condition default_error_condition(int value) const noexcept override
    {
        switch (static_cast<errc>(value)) {
        case errc::operation_aborted: return std::errc::operation_canceled;
        case errc::timed_out: return std::errc::timed_out;
        case errc::connection_reset: return std::errc::connection_reset;
        case errc::connection_refused: return std::errc::connection_refused;
        case errc::connection_aborted: return std::errc::connection_aborted;
        case errc::not_connected: return std::errc::not_connected;
        case errc::address_in_use: return std::errc::address_in_use;
        case errc::network_unreachable: return std::errc::network_unreachable;
        case errc::invalid_argument:
        case errc::bad_address: return std::errc::invalid_argument;
        case errc::send_queue_full: return std::errc::no_buffer_space;
        case errc::no_resources: return std::errc::not_enough_memory;
        case errc::datagram_truncated: return std::errc::message_size;
        case errc::file_not_found: return std::errc::no_such_file_or_directory;
        case errc::file_exists: return std::errc::file_exists;
        case errc::access_denied: return std::errc::permission_denied;
        case errc::file_in_use: return std::errc::device_or_resource_busy;
        case errc::disk_full: return std::errc::no_space_on_device;
        default: return std::error_condition(value, *this);
        }
    }
};

} // namespace detail

/// The category of portico::errc. Thread safety: a single immutable object.
inline const std::error_category& error_category() noexcept
{
    static const detail::error_category instance;
    return instance;
}

/// Makes a std::error_code in portico's category; found by ADL so that
/// `std::error_code ec = portico::errc::eof;` works.
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// Makes a std::error_condition in portico's category, so that a raw or
/// std code can be compared against a portico condition.
inline std::error_condition make_error_condition(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// The result of an awaited operation: an error code and, for T other than
/// void, a value (meaningful as documented by each operation; for I/O, the
/// bytes transferred are reported even when an error is).
///
/// Destructure it: `auto [ec, n] = co_await s.read_some(buf);` or, for
/// io_result<void>, `auto [ec] = co_await t;`. `.value()` throws
/// std::system_error when there is an error, for code that prefers exceptions.
/// Thread safety: a plain value type.
template <class T = void>
class io_result {
public:
    /// The type of the value.
    using value_type = T;

    io_result()
        requires std::is_default_constructible_v<T>
    = default;
    /// Holds the error `ec` (a default std::error_code is success) and
    /// `value`, which is kept even when there is an error.
    io_result(std::error_code ec, T value) noexcept(std::is_nothrow_move_constructible_v<T>)
        : ec_(ec), value_(std::move(value))
    {}

    /// The error, or a default (false) std::error_code on success.
    [[nodiscard]] const std::error_code& error() const noexcept { return ec_; }
    /// True on success.
    [[nodiscard]] explicit operator bool() const noexcept { return !ec_; }

    /// The value. Throws std::system_error(error()) if there is an error.
    T& value() &
    {
        throw_if_error();
        return value_;
    }
    /// The value, read-only. Throws std::system_error(error()) if there is an
    /// error.
    const T& value() const&
    {
        throw_if_error();
        return value_;
    }
    /// The value, moved out of an rvalue result. Throws
    /// std::system_error(error()) if there is an error.
    T&& value() &&
    {
        throw_if_error();
        return std::move(value_);
    }

    /// The value whether or not there is an error (never throws).
    T& value_unchecked() noexcept { return value_; }
    /// The value, read-only, whether or not there is an error (never throws).
    const T& value_unchecked() const noexcept { return value_; }

    /// Tuple protocol for structured bindings: get<0>() is the error,
    /// get<1>() the value.
    template <std::size_t I>
    decltype(auto) get() & noexcept
    {
        if constexpr (I == 0)
            return (ec_);
        else
            return (value_);
    }
    /// Tuple protocol for a const result: get<0>() is the error, get<1>() the
    /// value.
    template <std::size_t I>
    decltype(auto) get() const& noexcept
    {
        if constexpr (I == 0)
            return (ec_);
        else
            return (value_);
    }
    /// Tuple protocol for an rvalue result: moves out the error (get<0>()) or
    /// the value (get<1>()).
    template <std::size_t I>
    decltype(auto) get() && noexcept
    {
        if constexpr (I == 0)
            return std::move(ec_);
        else
            return std::move(value_);
    }

private:
    void throw_if_error() const
    {
        if (ec_) throw std::system_error(ec_);
    }

    std::error_code ec_;
    T value_{};
};

/// io_result<void>: only an error code. `auto [ec] = co_await op;`
template <>
class io_result<void> {
public:
    /// There is no value.
    using value_type = void;

    io_result() = default;
    /// Holds the error `ec` (a default std::error_code is success). Implicit,
    /// so an operation may `return {ec};`.
    io_result(std::error_code ec) noexcept : ec_(ec) {}

    /// The error, or a default (false) std::error_code on success.
    [[nodiscard]] const std::error_code& error() const noexcept { return ec_; }
    /// True on success.
    [[nodiscard]] explicit operator bool() const noexcept { return !ec_; }
    /// Throws std::system_error(error()) if there is an error.
    void value() const
    {
        if (ec_) throw std::system_error(ec_);
    }

    /// Tuple protocol for structured bindings: get<0>() is the error.
    template <std::size_t I>
    const std::error_code& get() const& noexcept
    {
        static_assert(I == 0);
        return ec_;
    }
    /// Tuple protocol for an rvalue result: moves out the error (I must be 0).
    template <std::size_t I>
    std::error_code&& get() && noexcept
    {
        static_assert(I == 0);
        return std::move(ec_);
    }

private:
    std::error_code ec_;
};

PORTICO_NAMESPACE_END

template <>
struct std::is_error_code_enum<portico::errc> : std::true_type {};

template <class T>
struct std::tuple_size<portico::io_result<T>> : std::integral_constant<std::size_t, 2> {};
template <>
struct std::tuple_size<portico::io_result<void>> : std::integral_constant<std::size_t, 1> {};
template <class T>
struct std::tuple_element<0, portico::io_result<T>> {
    using type = std::error_code;
};
template <class T>
struct std::tuple_element<1, portico::io_result<T>> {
    using type = T;
};
