#include <portico/buffer.hpp>

#include "support/catch.hpp"

#include <array>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

using portico::buffer;
using portico::buffer_cursor;
using portico::buffer_size;
using portico::const_buffer;
using portico::mutable_buffer;

static_assert(portico::const_buffer_sequence<const_buffer>);
static_assert(portico::const_buffer_sequence<mutable_buffer>);
static_assert(portico::const_buffer_sequence<std::vector<const_buffer>>);
static_assert(portico::const_buffer_sequence<std::array<mutable_buffer, 3>>);
static_assert(portico::mutable_buffer_sequence<std::array<mutable_buffer, 3>>);
static_assert(!portico::mutable_buffer_sequence<const_buffer>);
static_assert(!portico::mutable_buffer_sequence<std::vector<const_buffer>>);

TEST_CASE("buffer() views memory with the right size and constness", "[buffer]")
{
    std::array<std::uint32_t, 4> words{};
    auto w = buffer(words);
    static_assert(std::is_same_v<decltype(w), mutable_buffer>);
    CHECK(w.size() == 16);
    CHECK(w.data() == words.data());

    const std::string text = "hello";
    auto t = buffer(text);
    static_assert(std::is_same_v<decltype(t), const_buffer>);
    CHECK(t.size() == 5);

    auto sv = buffer(std::string_view("abc"));
    CHECK(sv.size() == 3);

    char raw[10];
    mutable_buffer m = buffer(raw, sizeof raw);
    m += 4;
    CHECK(m.size() == 6);
    CHECK(m.data() == raw + 4);
    m += 100; // past the end: empty, not beyond
    CHECK(m.size() == 0);
    CHECK(m.data() == raw + 10);
}

TEST_CASE("buffer_size sums a sequence", "[buffer]")
{
    char a[3], b[5];
    std::vector<mutable_buffer> seq{buffer(a, 3), mutable_buffer{}, buffer(b, 5)};
    CHECK(buffer_size(seq) == 8);
    CHECK(buffer_size(buffer(a, 3)) == 3);
}

TEST_CASE("buffer_cursor walks a sequence across short transfers", "[buffer]")
{
    // 70 buffers of varied sizes (some empty) over one source of bytes.
    std::vector<char> source(1000);
    std::iota(source.begin(), source.end(), 0);
    std::vector<const_buffer> seq;
    std::size_t used = 0;
    std::mt19937 rng(3);
    for (int i = 0; i < 70; ++i) {
        const std::size_t n = i % 7 == 0 ? 0 : rng() % 20;
        seq.push_back(buffer(source.data() + used, n));
        used += n;
    }

    for (int round = 0; round < 50; ++round) {
        buffer_cursor<const_buffer, std::vector<const_buffer>> cursor(seq);
        CHECK(cursor.remaining() == used);
        std::vector<char> gathered;
        while (!cursor.empty()) {
            std::array<const_buffer, 64> out;
            const std::size_t count = cursor.prepare(std::span(out));
            REQUIRE(count > 0);
            REQUIRE(count <= 64);
            std::size_t available = 0;
            for (std::size_t i = 0; i < count; ++i) {
                CHECK(out[i].size() > 0); // empty buffers are skipped
                available += out[i].size();
            }
            // A "short transfer": take a random prefix of what was offered.
            const std::size_t take = 1 + rng() % available;
            std::size_t left = take;
            for (std::size_t i = 0; i < count && left > 0; ++i) {
                const std::size_t n = std::min(left, out[i].size());
                const char* p = static_cast<const char*>(out[i].data());
                gathered.insert(gathered.end(), p, p + n);
                left -= n;
            }
            cursor.consume(take);
        }
        REQUIRE(gathered.size() == used);
        CHECK(std::equal(gathered.begin(), gathered.end(), source.begin()));
    }
}

TEST_CASE("buffer_cursor over a single buffer, and consume past the end", "[buffer]")
{
    char data[8] = {};
    const mutable_buffer single = buffer(data, sizeof data);
    buffer_cursor<mutable_buffer, mutable_buffer> cursor(single);
    std::array<mutable_buffer, 4> out;
    REQUIRE(cursor.prepare(std::span(out)) == 1);
    CHECK(out[0].size() == 8);
    cursor.consume(3);
    REQUIRE(cursor.prepare(std::span(out)) == 1);
    CHECK(out[0].data() == data + 3);
    CHECK(out[0].size() == 5);
    cursor.consume(100);
    CHECK(cursor.empty());
    CHECK(cursor.prepare(std::span(out)) == 0);
}
