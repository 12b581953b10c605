// The bytes the load client sends, and so expects back.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace load {

// A pseudo-random byte sequence with a prime period that every message is cut
// from. A message starts at a position chosen by its connection and number, a
// stream at one chosen by its connection; so an echo of another message,
// another connection's bytes or a shifted stream all differ from what is
// expected. The sequence is stored with `longest` bytes past the period, so a
// message of up to that many bytes is one contiguous slice that is sent from
// here directly and compared with memcmp.
class byte_pattern {
public:
    static constexpr std::size_t period = 65521;

    byte_pattern(std::uint64_t seed, std::size_t longest) : bytes_(period + longest)
    {
        std::uint64_t state = seed;
        for (std::size_t i = 0; i < period; ++i) {
            state += 0x9e3779b97f4a7c15;
            bytes_[i] = static_cast<std::uint8_t>(mix(state) >> 56);
        }
        for (std::size_t i = period; i < bytes_.size(); ++i) bytes_[i] = bytes_[i - period];
    }

    // Where message `message` of connection `connection` starts.
    static std::uint64_t start_of(std::uint64_t connection, std::uint64_t message) noexcept
    {
        return mix((connection << 40) ^ message) % period;
    }

    // The bytes from `position` on; `longest` of them are readable.
    const std::uint8_t* at(std::uint64_t position) const noexcept { return bytes_.data() + position % period; }

    // How many of data[0, n) equal the sequence from `position` on, before the first that does not.
    std::size_t matching(std::uint64_t position, const std::uint8_t* data, std::size_t n) const noexcept
    {
        std::size_t done = 0;
        std::size_t from = position % period;
        while (done < n) {
            const std::size_t length = std::min(n - done, bytes_.size() - from);
            if (std::memcmp(data + done, bytes_.data() + from, length) != 0) {
                const auto* differs = std::mismatch(data + done, data + done + length, bytes_.data() + from).first;
                return static_cast<std::size_t>(differs - data);
            }
            done += length;
            from = (from + length) % period;
        }
        return n;
    }

private:
    // The splitmix64 finaliser: spreads nearby inputs over all 64 bits.
    static std::uint64_t mix(std::uint64_t x) noexcept
    {
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
        x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
        return x ^ (x >> 31);
    }

    std::vector<std::uint8_t> bytes_;
};

} // namespace load
