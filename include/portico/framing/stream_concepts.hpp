// portico: stream concepts — what packet_stream needs of the byte stream it
// frames: reading, writing, and a clock for its timeouts.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/awaitable_traits.hpp>

#include <span>
#include <type_traits>

PORTICO_NAMESPACE_BEGIN

/// What packet_stream needs of a stream for reading: `read_some` of a span
/// of mutable_buffers, awaitable, yielding io_result<size_t> with eof at the
/// end (tcp_socket; a mock stream in tests).
template <class S>
concept readable_stream = requires(S& s, std::span<mutable_buffer> buffers) {
    { s.read_some(buffers) } -> awaitable;
};

/// What write_packet needs: `write_some` of a span of const_buffers,
/// awaitable, yielding io_result<size_t> (the bytes taken, possibly fewer
/// than offered).
template <class S>
concept writable_stream = requires(S& s, std::span<const_buffer> buffers) {
    { s.write_some(buffers) } -> awaitable;
};

/// What lets an idle packet_stream hold no receive buffer: `wait_readable()`,
/// awaitable, yielding io_result<void> once a read would not wait, and
/// consuming nothing (tcp_socket: a zero-byte receive).
template <class S>
concept parkable_stream = requires(S& s) {
    { s.wait_readable() } -> awaitable;
};

/// What packet_stream needs of a stream for its timeouts: `context()` with
/// a `clock` and an awaitable `sleep_until(clock::time_point)` that yields
/// io_result<void> and observes the stop token (tcp_socket's io_context; a
/// manual clock in tests).
template <class S>
concept timed_stream = requires(S& s) {
    typename std::remove_cvref_t<decltype(s.context())>::clock;
    { s.context().sleep_until(std::remove_cvref_t<decltype(s.context())>::clock::now()) } -> awaitable;
};

PORTICO_NAMESPACE_END
