// portico: the backend seam — the one place that picks the platform's I/O
// backend, and the list of names every backend provides.
//
// The public headers that do I/O (io_context.hpp, net/, file/) include this file
// and name only `detail::backend::` types, never a platform header or call.
// A backend is a folder under detail/ (win/ today; uring/ next) that defines
// the names aliased below; docs/design/layout.md describes each one's
// contract. Which backend: the #if ladder in config.hpp.
#pragma once

#include <portico/config.hpp>

#include <cstddef>
#include <cstdint>

#if PORTICO_BACKEND_IOCP
#include <portico/detail/win/accept_pool.hpp>
#include <portico/detail/win/file.hpp>
#include <portico/detail/win/file_ops.hpp>
#include <portico/detail/win/name_lookup.hpp>
#include <portico/detail/win/overlapped_op.hpp>
#include <portico/detail/win/scheduler.hpp>
#include <portico/detail/win/signal_registry.hpp>
#include <portico/detail/win/socket.hpp>
#include <portico/detail/win/socket_ops.hpp>
#include <portico/detail/win/timer_service.hpp>
#include <portico/detail/win/wsabuf.hpp>
#elif PORTICO_BACKEND_URING
#include <portico/detail/uring/accept_pool.hpp>
#include <portico/detail/uring/file.hpp>
#include <portico/detail/uring/file_ops.hpp>
#include <portico/detail/uring/name_lookup.hpp>
#include <portico/detail/uring/operation.hpp>
#include <portico/detail/uring/scheduler.hpp>
#include <portico/detail/uring/signal_registry.hpp>
#include <portico/detail/uring/socket.hpp>
#include <portico/detail/uring/socket_ops.hpp>
#include <portico/detail/uring/timer_service.hpp>
#else
#error                                                                                                                 \
    "portico: io_context and the sockets need an I/O backend, and this platform has none yet (Windows IOCP; Linux io_uring with PORTICO_EXPERIMENTAL_URING defined). The platform-neutral headers (coro/, framing/, buffer.hpp, error.hpp, stop_token.hpp, net/address.hpp, net/endpoint.hpp) build everywhere."
#endif

PORTICO_NAMESPACE_BEGIN

namespace detail::backend {

#if PORTICO_BACKEND_IOCP
namespace impl = detail::win;
#elif PORTICO_BACKEND_URING
namespace impl = detail::uring;
#endif

// --- the context ---
/// Runs completions on the threads that call run(); counts outstanding work;
/// post(), defer(), timers(), statistics(), stop().
using scheduler = impl::scheduler;
/// What the scheduler completes: `operation(complete_fn)` where
/// complete_fn is `void(operation*, std::uintptr_t status, std::uint32_t bytes) noexcept`.
#if PORTICO_BACKEND_IOCP
using operation = impl::overlapped_op;
#else
using operation = impl::operation;
#endif
/// An operation that is also a timer-heap node (deadline, fired).
using timer_op = impl::timer_op;

// --- sockets ---
/// An owned socket and its synchronous calls (open, associate, bind,
/// listen, options, names, shutdown, close, cancel).
using socket_handle = impl::socket_handle;
/// What an operation needs of its socket (socket_handle::ref()).
using socket_ref = impl::socket_ref;
/// A stream receive, wait (a zero-byte receive), send and connect; a
/// datagram send and receive. Each is an awaiter base with `error_`,
/// `bytes_` and (but connect) `requested_`; a stream receive and send over
/// up to N buffers (buffers_for). A stream receive and send take a second
/// argument, the operation that extends them (read_all_op, write_all_op:
/// its `next_step` runs when the request completes), or void.
template <std::size_t N, class Derived = void>
using stream_recv_op = impl::stream_recv_op<N, Derived>;
using stream_wait_op = impl::stream_wait_op;
template <std::size_t N, class Derived = void>
using stream_send_op = impl::stream_send_op<N, Derived>;
using stream_connect_op = impl::stream_connect_op;
/// The base of every socket operation (CRTP): what a composed operation
/// names as its friend, so the base can call its hooks (next_step).
template <class Derived>
using socket_op = impl::socket_op<Derived>;
using datagram_send_op = impl::datagram_send_op;
using datagram_recv_op = impl::datagram_recv_op;
#if PORTICO_BACKEND_IOCP
/// The most buffers one scatter/gather call takes.
inline constexpr std::size_t max_buffers = impl::max_wsabufs;
/// The buffers a stream receive or send over a sequence of type Sequence
/// carries room for: what its type can hold, 1 to max_buffers.
template <class Buffer, class Sequence>
inline constexpr std::size_t buffers_for = impl::wsabufs_for<Buffer, Sequence>;
#else
inline constexpr std::size_t max_buffers = impl::max_iovecs;
template <class Buffer, class Sequence>
inline constexpr std::size_t buffers_for = impl::iovecs_for<Buffer, Sequence>;
#endif

// --- files ---
/// An owned file opened for overlapped I/O and its synchronous calls (open,
/// associate, size, resize, cancel, close, ref()).
using file_handle = impl::file_handle;
/// What a file operation needs of its file (file_handle::ref()).
using file_ref = impl::file_ref;
/// A read and a write at an offset, into or from the first non-empty buffer
/// of a sequence. Each is an awaiter base with `error()` (the result as a
/// file error), `bytes_` and `requested_`.
using file_read_op = impl::file_read_op;
using file_write_op = impl::file_write_op;
/// The most bytes one file read or write moves.
inline constexpr std::size_t max_file_transfer = impl::max_file_transfer;

// --- listening and names ---
/// A listener's pending accepts, and the awaiter base of accept().
using accept_pool = impl::accept_pool;
using accept_awaiter = impl::accept_awaiter;
/// One asynchronous host/service lookup (resolver).
using name_lookup = impl::name_lookup;

/// One transmit: head, up to max_transmit_file_bytes of a file from an
/// offset, and tail on a connected socket (Windows: one TransmitFile call;
/// Linux: reads and sends of its own): an awaiter base with `error()`,
/// `bytes_` and `requested_` (all three parts), made from the socket's and
/// the file's refs.
using transmit_file_op = impl::transmit_file_op;
inline constexpr std::uint64_t max_transmit_file_bytes = impl::max_transmit_file_bytes;
/// The largest head or tail of one transmit_file_op.
inline constexpr std::size_t max_transmit_buffer = impl::max_transmit_buffer;

// --- process signals ---
/// The process-wide list of signal_sets and the system hook that feeds it
/// (Windows: the console control handler; Linux: signal handlers and a
/// thread): add/change/remove a signal_listener, and dispatch(event,
/// grace), what the hook calls (and how tests raise an event).
using signal_registry = impl::signal_registry;

} // namespace detail::backend

PORTICO_NAMESPACE_END
