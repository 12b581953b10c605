#include <portico/framing/packet.hpp>

#include "support/catch.hpp"

#include <array>
#include <cstddef>

TEST_CASE("packet: a plain value whose body is a view of bytes it does not own", "[packet]")
{
    const portico::packet empty;
    CHECK(empty.type == 0);
    CHECK(empty.body.empty());
    std::array<std::byte, 3> bytes{std::byte{1}, std::byte{2}, std::byte{3}};
    const portico::packet p{7, bytes};
    const portico::packet copy = p;
    CHECK(copy.type == 7);
    CHECK(copy.body.data() == bytes.data()); // a copy of the view, not of the bytes
    CHECK(copy.body.size() == 3);
}
