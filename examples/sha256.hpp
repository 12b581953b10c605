// SHA-256 for the file example, written out from its definition (FIPS 180-4,
// sections 4.1.2, 4.2.2, 5.1.1, 5.3.3 and 6.2): the same code on Windows and
// Linux, no library and no system API, so the example builds wherever portico
// does. The course notes suggest sending an MD5 of the file with it: SHA-256
// is that idea with a hash still considered collision-resistant, where MD5
// (and a CRC-32) catch accidents but not tampering.
//
// It is plain C++, one 64-byte block at a time: a few hundred MiB/s in a
// release build, ample for an example whose bytes also cross a network.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace file_hash {

/// A SHA-256 digest: 32 bytes.
using digest = std::array<std::byte, 32>;

/// One SHA-256 computation: update() with the bytes in order, then
/// finish() once. Allocates nothing and cannot fail.
/// Thread safety: one thread at a time (hashes of their own on others).
class sha256 {
public:
    /// A hash of no bytes yet.
    sha256() noexcept = default;

    // snippet-begin: hash
    /// Adds `bytes` to the hash.
    void update(std::span<const std::byte> bytes) noexcept
    {
        total_ += bytes.size();
        // Top up a partial block first; whole blocks then come straight from
        // `bytes`, and what is left waits in block_ for the next call.
        if (used_ != 0) {
            const std::size_t n = bytes.size() < block_.size() - used_ ? bytes.size() : block_.size() - used_;
            std::memcpy(block_.data() + used_, bytes.data(), n);
            used_ += n;
            bytes = bytes.subspan(n);
            if (used_ < block_.size()) return;
            compress(block_.data());
            used_ = 0;
        }
        while (bytes.size() >= block_.size()) {
            compress(bytes.data());
            bytes = bytes.subspan(block_.size());
        }
        std::memcpy(block_.data(), bytes.data(), bytes.size());
        used_ = bytes.size();
    }

    /// The digest of everything added. The hash cannot be updated after it.
    digest finish() noexcept
    {
        // Padding (5.1.1): a 1 bit, zeros up to 56 bytes into a block, then
        // the message length in bits as a big-endian 64-bit number.
        const std::uint64_t bits = total_ * 8;
        block_[used_++] = std::byte{0x80};
        if (used_ > 56) {
            std::memset(block_.data() + used_, 0, block_.size() - used_);
            compress(block_.data());
            used_ = 0;
        }
        std::memset(block_.data() + used_, 0, 56 - used_);
        for (int i = 0; i < 8; ++i) block_[56 + i] = static_cast<std::byte>(bits >> (56 - 8 * i));
        compress(block_.data());
        digest out{};
        for (std::size_t i = 0; i < 8; ++i) {
            for (std::size_t j = 0; j < 4; ++j) out[4 * i + j] = static_cast<std::byte>(h_[i] >> (24 - 8 * j));
        }
        return out;
    }
    // snippet-end: hash

private:
    // The block transformation (6.2.2) on 64 bytes at `p`.
    //
    // NOTE: C arrays, casts and a macro rather than std::array, to_integer
    // and a rotate function: in an unoptimised build (the Debug presets,
    // with sanitizers) each of those is a call per use, and the hash was the
    // slowest part of a transfer by far. For the same reason UBSan is kept
    // out: its checks made this loop four times slower, and it has nothing
    // to find in it (unsigned words, which wrap by definition, and shifts
    // by constant counts below 32).
#if defined(__clang__) || defined(__GNUC__)
    __attribute__((no_sanitize("undefined")))
#endif
    void
    compress(const std::byte* p) noexcept
    {
        // The first 32 bits of the fractional parts of the cube roots of the
        // first 64 primes (4.2.2).
        static constexpr std::uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
#define FILE_HASH_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
        // The message schedule (6.2.2, step 1): 16 big-endian words, then 48
        // derived from them.
        std::uint32_t w[64];
        for (int t = 0; t < 16; ++t) {
            w[t] = static_cast<std::uint32_t>(p[4 * t]) << 24 | static_cast<std::uint32_t>(p[4 * t + 1]) << 16 |
                   static_cast<std::uint32_t>(p[4 * t + 2]) << 8 | static_cast<std::uint32_t>(p[4 * t + 3]);
        }
        for (int t = 16; t < 64; ++t) {
            const std::uint32_t s0 = FILE_HASH_ROTR(w[t - 15], 7) ^ FILE_HASH_ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
            const std::uint32_t s1 = FILE_HASH_ROTR(w[t - 2], 17) ^ FILE_HASH_ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        std::uint32_t* const hv = h_.data();
        std::uint32_t a = hv[0], b = hv[1], c = hv[2], d = hv[3], e = hv[4], f = hv[5], g = hv[6], h = hv[7];
        for (int t = 0; t < 64; ++t) {
            const std::uint32_t big_s1 = FILE_HASH_ROTR(e, 6) ^ FILE_HASH_ROTR(e, 11) ^ FILE_HASH_ROTR(e, 25);
            const std::uint32_t ch = (e & f) ^ (~e & g);
            const std::uint32_t t1 = h + big_s1 + ch + k[t] + w[t];
            const std::uint32_t big_s0 = FILE_HASH_ROTR(a, 2) ^ FILE_HASH_ROTR(a, 13) ^ FILE_HASH_ROTR(a, 22);
            const std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            const std::uint32_t t2 = big_s0 + maj;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
#undef FILE_HASH_ROTR
        hv[0] += a;
        hv[1] += b;
        hv[2] += c;
        hv[3] += d;
        hv[4] += e;
        hv[5] += f;
        hv[6] += g;
        hv[7] += h;
    }

    // The initial hash value (5.3.3): the first 32 bits of the fractional
    // parts of the square roots of the first 8 primes.
    std::array<std::uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<std::byte, 64> block_{};
    std::size_t used_ = 0;    // bytes of block_ waiting for the rest of their block
    std::uint64_t total_ = 0; // bytes added so far
};

/// The digest as 64 lower-case hex digits, as sha256sum prints it.
inline std::string hex(const digest& d)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * d.size());
    for (const std::byte b : d) {
        out += digits[std::to_integer<unsigned>(b) >> 4];
        out += digits[std::to_integer<unsigned>(b) & 0xFu];
    }
    return out;
}

} // namespace file_hash
