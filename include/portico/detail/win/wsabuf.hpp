// portico: buffer sequences as WSABUF arrays, for WSASend/WSARecv and friends.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>

#include <algorithm>
#include <array>
#include <cstddef>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// The most buffers one WSARecv/WSASend takes; longer sequences are sent in
/// several calls by read()/write_all().
inline constexpr std::size_t max_wsabufs = 64;

template <class Buffer, class Sequence>
std::size_t fill_wsabufs(const Sequence& buffers, std::array<WSABUF, max_wsabufs>& out, std::size_t& total) noexcept
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
