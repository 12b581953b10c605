#include "examples/untrusted_text.hpp"

#include "support/catch.hpp"

#include <string>
#include <string_view>

using example::escaped;
using namespace std::string_literals;

TEST_CASE("escaped: printable ASCII passes unchanged", "[untrusted_text]")
{
    CHECK(escaped("alice") == "alice");
    CHECK(escaped(" !~{}'\"") == " !~{}'\"");
    CHECK(escaped("") == "");
}

TEST_CASE("escaped: control bytes, DEL and the backslash are escaped", "[untrusted_text]")
{
    CHECK(escaped("a\nb") == "a\\x0ab");
    CHECK(escaped("\r\t\a") == "\\x0d\\x09\\x07");
    CHECK(escaped("\x1b[2J") == "\\x1b[2J");
    CHECK(escaped("\x7f") == "\\x7f");
    CHECK(escaped("\0x"s) == "\\x00x");
    // A peer cannot fake an escape: its backslash is doubled.
    CHECK(escaped("\\x0a") == "\\\\x0a");
}

TEST_CASE("escaped: every byte above 0x7E is escaped, valid UTF-8 included", "[untrusted_text]")
{
    CHECK(escaped("\xc3\x84rger") == "\\xc3\\x84rger");
    CHECK(escaped("\xc2\x9b") == "\\xc2\\x9b");          // U+009B, the C1 CSI
    CHECK(escaped("\xe2\x80\xae") == "\\xe2\\x80\\xae"); // U+202E, right-to-left override
    CHECK(escaped("\xff\xfe") == "\\xff\\xfe");          // not UTF-8 at all
}

TEST_CASE("escaped: no byte of the result is a control byte or above 0x7E", "[untrusted_text]")
{
    std::string every;
    for (int b = 0; b < 256; ++b) every += static_cast<char>(b);
    const std::string out = escaped(every, every.size());
    for (const char c : out) {
        const auto b = static_cast<unsigned char>(c);
        CHECK((b >= 0x20 && b <= 0x7E));
    }
    // 95 printable bytes stay one character (the backslash becomes two), the
    // other 161 become four.
    CHECK(out.size() == 94 + 2 + 161 * 4);
}

TEST_CASE("escaped: at most `limit` input bytes are shown, then an ellipsis", "[untrusted_text]")
{
    CHECK(escaped("abcdef", 3) == "abc...");
    CHECK(escaped("abc", 3) == "abc");
    CHECK(escaped("\n\n\n\n", 2) == "\\x0a\\x0a...");
    CHECK(escaped(std::string(1000, 'x')) == std::string(200, 'x') + "...");
}
