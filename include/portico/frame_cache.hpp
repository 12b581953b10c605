// portico: the coroutine frames portico keeps for reuse — how much, and how
// to give them back (docs/design/frames.md, docs/design/memory.md).
#pragma once

#include <portico/config.hpp>
#include <portico/detail/frame_allocation.hpp>

#include <cstddef>

PORTICO_NAMESPACE_BEGIN

/// Bytes of coroutine frames the process keeps for reuse now, in every size
/// class together: blocks of frames that ended, waiting for the next frame
/// of their size (a snapshot). At most 64 x frame_cache_limit().
/// Thread safety: any thread.
[[nodiscard]] inline std::size_t frame_cache_bytes() noexcept { return detail::frame_cache::cached_bytes(); }

/// The most bytes of free frames kept per size class (frames are grouped in
/// 64-byte steps up to 4 KiB; larger ones never are): 256 KiB unless
/// set_frame_cache_limit() changed it. Thread safety: any thread.
[[nodiscard]] inline std::size_t frame_cache_limit() noexcept { return detail::frame_cache::limit_per_class(); }

/// Sets frame_cache_limit() for the whole process and frees at once what
/// each size class keeps beyond it; returns the bytes freed. 0 keeps no
/// frame: every frame then comes from the heap and goes back to it, which
/// costs an allocation per coroutine call (read_packet(), read_all()...).
/// Frames in use are not affected. Thread safety: any thread.
inline std::size_t set_frame_cache_limit(std::size_t bytes_per_size) noexcept
{
    return detail::frame_cache::set_limit_per_class(bytes_per_size);
}

/// Frees every frame kept for reuse (the limit stays); returns the bytes
/// freed. For after a storm of connections, when the frames it needed will
/// not be needed again soon: the next frames come from the heap until the
/// cache has refilled. Thread safety: any thread.
inline std::size_t trim_frame_cache() noexcept { return detail::frame_cache::trim_to(0); }

PORTICO_NAMESPACE_END
