#include "examples/sha256.hpp"

#include "support/catch.hpp"

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace {

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string sha256_hex(std::string_view message)
{
    file_hash::sha256 hash;
    hash.update(bytes_of(message));
    return file_hash::hex(hash.finish());
}

} // namespace

// The digests of FIPS 180-2 appendix B and of the NIST example values.
TEST_CASE("sha256: the standard test vectors", "[sha256]")
{
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    // 448 bits: the padding needs a second block.
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("sha256: one million 'a', added in pieces of every alignment", "[sha256]")
{
    const std::string million(1'000'000, 'a');
    const std::string expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    CHECK(sha256_hex(million) == expected);
    // Pieces of 1 to 200 bytes in turn: partial blocks topped up, whole
    // blocks taken straight from the input, and every split in between.
    file_hash::sha256 hash;
    std::size_t at = 0;
    for (std::size_t piece = 1; at < million.size(); piece = piece % 200 + 1) {
        const std::size_t n = piece < million.size() - at ? piece : million.size() - at;
        hash.update(bytes_of(std::string_view(million).substr(at, n)));
        at += n;
    }
    CHECK(file_hash::hex(hash.finish()) == expected);
}

TEST_CASE("sha256: an incremental update equals one update of the whole", "[sha256]")
{
    std::string message;
    for (int i = 0; i < 1000; ++i) message += static_cast<char>((i * 131 + 7) & 0xFF);
    // Splits around the block size and the padding boundary (55, 56, 64).
    for (const std::size_t split : std::array<std::size_t, 11>{0, 1, 55, 56, 63, 64, 65, 119, 128, 999, 1000}) {
        file_hash::sha256 hash;
        hash.update(bytes_of(std::string_view(message).substr(0, split)));
        hash.update(bytes_of(std::string_view(message).substr(split)));
        CHECK(file_hash::hex(hash.finish()) == sha256_hex(message));
    }
    // Lengths at the padding boundary, against the one-update digests of the
    // same bytes (checked against sha256sum when these tests were written).
    CHECK(sha256_hex(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    CHECK(sha256_hex(std::string(56, 'a')) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    CHECK(sha256_hex(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}
