// portico: umbrella header — includes every public header for this platform.
#pragma once

#include <portico/config.hpp>
#include <portico/stop_token.hpp>

#include <portico/buffer.hpp>
#include <portico/coro/async_mutex.hpp>
#include <portico/coro/awaitable_traits.hpp>
#include <portico/coro/get_stop_token.hpp>
#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/coro/when_any.hpp>
#include <portico/error.hpp>
#include <portico/file/file_mode.hpp>
#include <portico/frame_cache.hpp>
#include <portico/framing/packet.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/framing/packet_stream.hpp>
#include <portico/framing/packet_stream_options.hpp>
#include <portico/framing/send_queue_limits.hpp>
#include <portico/framing/shared_packet.hpp>
#include <portico/framing/stream_concepts.hpp>
#include <portico/framing/write_packet_op.hpp>
#include <portico/io_statistics.hpp>
#include <portico/net/address.hpp>
#include <portico/net/endpoint.hpp>
#include <portico/signal_event.hpp>

#if !PORTICO_BACKEND_NONE
#include <portico/file/random_access_file.hpp>
#include <portico/io_context.hpp>
#include <portico/net/resolver.hpp>
#include <portico/net/tcp_acceptor.hpp>
#include <portico/net/tcp_socket.hpp>
#include <portico/net/udp_socket.hpp>
#include <portico/signal_set.hpp>
#include <portico/thread_pool.hpp>
#include <portico/deadline.hpp>
#endif
