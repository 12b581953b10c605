// SHA-256 for the file example, from the system: Windows' CNG (BCrypt), in
// every Windows since Vista, so the example needs no library; Wine implements
// it too. The course notes suggest sending an MD5 of the file with it:
// SHA-256 is that idea with a hash still considered collision-resistant,
// where MD5 (and a CRC-32) catch accidents but not tampering.
#pragma once

// The Windows SDK, included the way portico includes it.
#include <portico/detail/win/windows.hpp>

// A C header; Wine's copy (which the MSVC-ABI build uses) does not say so
// itself, as the Windows SDK's does, so it is said here.
extern "C" {
#include <bcrypt.h>
}

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <utility>

namespace file_hash {

/// A SHA-256 digest: 32 bytes.
using digest = std::array<std::byte, 32>;

/// One SHA-256 computation: update() with the bytes in order, then
/// finish() once. Throws std::system_error if the system cannot hash.
/// Thread safety: one thread at a time (hashes of their own on others).
class sha256 {
public:
    sha256() { check(::BCryptCreateHash(provider(), &hash_, nullptr, 0, nullptr, 0, 0), "BCryptCreateHash"); }
    sha256(const sha256&) = delete;
    sha256& operator=(const sha256&) = delete;
    sha256(sha256&& other) noexcept : hash_(std::exchange(other.hash_, nullptr)) {}
    sha256& operator=(sha256&&) = delete;
    ~sha256()
    {
        if (hash_ != nullptr) ::BCryptDestroyHash(hash_);
    }

    // snippet-begin: hash
    /// Adds `bytes` to the hash.
    void update(std::span<const std::byte> bytes)
    {
        // BCryptHashData takes a 32-bit length: feed larger spans in parts.
        while (!bytes.empty()) {
            const auto n = static_cast<ULONG>(bytes.size() < 0x40000000u ? bytes.size() : 0x40000000u);
            check(::BCryptHashData(hash_, reinterpret_cast<PUCHAR>(const_cast<std::byte*>(bytes.data())), n, 0),
                  "BCryptHashData");
            bytes = bytes.subspan(n);
        }
    }

    /// The digest of everything added. The hash cannot be updated after it.
    digest finish()
    {
        digest out{};
        check(::BCryptFinishHash(hash_, reinterpret_cast<PUCHAR>(out.data()), static_cast<ULONG>(out.size()), 0),
              "BCryptFinishHash");
        return out;
    }
    // snippet-end: hash

private:
    // The algorithm is opened once per process and kept: opening it is the
    // expensive part, and a provider handle serves any number of hashes on
    // any threads.
    static BCRYPT_ALG_HANDLE provider()
    {
        static const BCRYPT_ALG_HANDLE algorithm = [] {
            BCRYPT_ALG_HANDLE h = nullptr;
            check(::BCryptOpenAlgorithmProvider(&h, BCRYPT_SHA256_ALGORITHM, nullptr, 0),
                  "BCryptOpenAlgorithmProvider(SHA256)");
            return h;
        }();
        return algorithm;
    }

    static void check(NTSTATUS status, const char* what)
    {
        // What the SDK's BCRYPT_SUCCESS says (Wine's headers lack the macro):
        // an NTSTATUS below 0 is an error.
        if (status < 0) {
            throw std::system_error(static_cast<int>(status), std::system_category(), what);
        }
    }

    BCRYPT_HASH_HANDLE hash_ = nullptr;
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
