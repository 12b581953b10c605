// Helpers shared by the framing tests and the fuzz target.
#pragma once

#include <portico/buffer.hpp>
#include <portico/framing/packet_format.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace portico::test {

/// Copies as much of `src` as fits into `regions`, in order (what a scatter
/// read does); returns the bytes copied.
inline std::size_t copy_into(std::span<const mutable_buffer> regions, std::span<const std::byte> src)
{
    std::size_t done = 0;
    for (const auto& region : regions) {
        const std::size_t n = std::min(region.size(), src.size() - done);
        // An empty source may have no data at all: memcpy from null is
        // undefined even for 0 bytes.
        if (n == 0) continue;
        std::memcpy(region.data(), src.data() + done, n);
        done += n;
    }
    return done;
}

/// The bytes of `s`.
inline std::vector<std::byte> bytes_of(const std::string& s)
{
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
}

/// Every packet_format shape: size 2/4, type 0/1/2/4, both byte orders, size
/// counting the header or not (32), with the default maximum.
inline std::vector<packet_format> all_packet_formats()
{
    std::vector<packet_format> out;
    for (unsigned size : {2u, 4u}) {
        for (unsigned type : {0u, 1u, 2u, 4u}) {
            for (byte_order order : {byte_order::little, byte_order::big}) {
                for (bool includes : {true, false}) {
                    packet_format f;
                    f.size_bytes = size;
                    f.type_bytes = type;
                    f.order = order;
                    f.size_includes_header = includes;
                    out.push_back(f);
                }
            }
        }
    }
    return out;
}

} // namespace portico::test
