#include <portico/detail/win/extensions.hpp>

#include <portico/detail/win/scheduler.hpp>

#include "support/catch.hpp"

TEST_CASE("the Winsock extension functions are found and looked up once", "[extensions]")
{
    portico::detail::win::ensure_winsock();
    const auto& first = portico::detail::win::extensions();
    CHECK(first.accept_ex != nullptr);
    CHECK(first.connect_ex != nullptr);
    CHECK(first.get_accept_ex_sockaddrs != nullptr);
    CHECK(first.disconnect_ex != nullptr);
    CHECK(first.transmit_file != nullptr);
    // The same table every time: no lookup per call.
    CHECK(&portico::detail::win::extensions() == &first);
}
