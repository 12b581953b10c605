#include "examples/log_limiter.hpp"

#include "support/catch.hpp"

#include <chrono>
#include <cstdio>
#include <string>

using namespace std::chrono_literals;
using example::log_limiter;

namespace {

// What was written to `f` so far.
std::string contents(std::FILE* f)
{
    std::fflush(f);
    std::rewind(f);
    std::string out;
    for (int c = std::fgetc(f); c != EOF; c = std::fgetc(f)) out += static_cast<char>(c);
    return out;
}

} // namespace

TEST_CASE("log_limiter: lets `lines` lines through per window, then counts", "[log_limiter]")
{
    std::FILE* out = std::tmpfile();
    REQUIRE(out != nullptr);
    {
        log_limiter log(3, 10s, out);
        const auto t0 = log_limiter::clock::now();
        CHECK(log.allow(t0));
        CHECK(log.allow(t0 + 1s));
        CHECK(log.allow(t0 + 2s));
        CHECK_FALSE(log.allow(t0 + 3s));
        CHECK_FALSE(log.allow(t0 + 9s));
        CHECK(contents(out).empty());
        // The next window: the count comes first, then lines go through again.
        CHECK(log.allow(t0 + 10s));
        CHECK(contents(out) == "(2 lines not shown: at most 3 per 10 s)\n");
        CHECK(log.allow(t0 + 11s));
    }
    std::fclose(out);
}

TEST_CASE("log_limiter: flush() reports the lines not shown once, and nothing if none were", "[log_limiter]")
{
    std::FILE* out = std::tmpfile();
    REQUIRE(out != nullptr);
    {
        log_limiter log(1, 10s, out);
        const auto t0 = log_limiter::clock::now();
        log.flush();
        CHECK(contents(out).empty());
        CHECK(log.allow(t0));
        for (int i = 0; i < 1000; ++i) CHECK_FALSE(log.allow(t0 + 1s));
        log.flush();
        log.flush();
        CHECK(contents(out) == "(1000 lines not shown: at most 1 per 10 s)\n");
    }
    std::fclose(out);
}

TEST_CASE("log_limiter: a quiet window passes nothing on to the next", "[log_limiter]")
{
    std::FILE* out = std::tmpfile();
    REQUIRE(out != nullptr);
    {
        log_limiter log(2, 10s, out);
        const auto t0 = log_limiter::clock::now();
        CHECK(log.allow(t0));
        CHECK(log.allow(t0));
        CHECK(log.allow(t0 + 25s));
        CHECK(log.allow(t0 + 25s));
        CHECK_FALSE(log.allow(t0 + 26s));
        CHECK(contents(out).empty());
    }
    std::fclose(out);
}
