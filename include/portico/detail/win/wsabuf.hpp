// portico: buffer sequences as WSABUF arrays, for WSASend/WSARecv and friends.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>

#include <algorithm>
#include <cstddef>
#include <span>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// The most buffers one WSARecv/WSASend takes; longer sequences are sent in
/// several calls by read()/write_all().
inline constexpr std::size_t max_wsabufs = 64;

/// WSABUFs an operation over a sequence of type Sequence needs: as many as
/// the type can hold (static_buffer_count), at least 1 (a datagram with no
/// bytes still needs an empty one), at most max_wsabufs.
template <class Buffer, class Sequence>
inline constexpr std::size_t wsabufs_for =
    (std::max)(std::size_t{1}, (std::min)(static_buffer_count<Buffer, Sequence>(), max_wsabufs));

/// Fills `out` with the first out.size() non-empty buffers of the sequence;
/// returns how many, and their bytes in `total`.
template <class Buffer, class Sequence>
std::size_t fill_wsabufs(const Sequence& buffers, std::span<WSABUF> out, std::size_t& total) noexcept
{
    std::size_t count = 0;
    total = 0;
    for_each_buffer<Buffer>(buffers, [&](const Buffer& b) {
        if (count == out.size() || b.size() == 0) return;
        // A single buffer above 4 GiB is cut: WSABUF lengths are 32-bit.
        const auto length = static_cast<ULONG>((std::min)(b.size(), std::size_t{0xFFFFFFFFu}));
        out[count].buf = static_cast<char*>(const_cast<void*>(static_cast<const void*>(b.data())));
        out[count].len = length;
        total += length;
        ++count;
    });
    return count;
}

} // namespace detail::win

PORTICO_NAMESPACE_END
