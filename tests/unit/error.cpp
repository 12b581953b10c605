#include <portico/error.hpp>

#include "support/catch.hpp"

#include <string>
#include <system_error>

using portico::errc;
using portico::io_result;

TEST_CASE("portico errc compares equal to the matching std::errc", "[error]")
{
    CHECK(std::error_code(errc::operation_aborted) == std::errc::operation_canceled);
    CHECK(std::error_code(errc::timed_out) == std::errc::timed_out);
    CHECK(std::error_code(errc::connection_reset) == std::errc::connection_reset);
    CHECK(std::error_code(errc::connection_refused) == std::errc::connection_refused);
    CHECK(std::error_code(errc::address_in_use) == std::errc::address_in_use);
    CHECK(std::error_code(errc::timed_out) != std::errc::connection_reset);
    CHECK(std::error_code(errc::datagram_truncated) == std::errc::message_size);
    CHECK(std::error_code(errc::file_not_found) == std::errc::no_such_file_or_directory);
    CHECK(std::error_code(errc::file_exists) == std::errc::file_exists);
    CHECK(std::error_code(errc::access_denied) == std::errc::permission_denied);
    CHECK(std::error_code(errc::file_in_use) == std::errc::device_or_resource_busy);
    CHECK(std::error_code(errc::disk_full) == std::errc::no_space_on_device);
    // eof has no std::errc counterpart and must not alias one.
    CHECK(std::error_code(errc::eof) != std::errc::operation_canceled);
    CHECK(std::error_code(errc::eof) == errc::eof);
}

TEST_CASE("portico errors have their own category and readable messages", "[error]")
{
    const std::error_code ec = errc::packet_too_large;
    CHECK(std::string(ec.category().name()) == "portico");
    CHECK(&ec.category() == &portico::error_category());
    CHECK(ec.message().find("maximum") != std::string::npos);
    CHECK(std::error_code(errc::eof).message() == "end of stream");
    CHECK_FALSE(std::error_code(errc::eof).message().empty());
    CHECK(static_cast<bool>(ec));
    for (int v = static_cast<int>(errc::eof); v <= static_cast<int>(errc::disk_full); ++v) {
        INFO("errc value " << v);
        CHECK(std::error_code(static_cast<errc>(v)).message() != "unknown portico error");
    }
}

TEST_CASE("io_result destructures and throws from value()", "[error]")
{
    io_result<int> ok({}, 42);
    auto [ec, n] = ok;
    CHECK_FALSE(ec);
    CHECK(n == 42);
    CHECK(ok.value() == 42);
    CHECK(static_cast<bool>(ok));

    io_result<int> failed(errc::connection_reset, 7);
    auto [ec2, n2] = failed;
    CHECK(ec2 == errc::connection_reset);
    CHECK(n2 == 7); // the partial count survives an error
    CHECK_FALSE(static_cast<bool>(failed));
    try {
        (void)failed.value();
        FAIL("value() did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::connection_reset);
    }
}

TEST_CASE("io_result<void> destructures to the error alone", "[error]")
{
    io_result<void> ok;
    auto [ec] = ok;
    CHECK_FALSE(ec);
    CHECK_NOTHROW(ok.value());

    io_result<void> failed(make_error_code(errc::timed_out));
    auto [ec2] = failed;
    CHECK(ec2 == std::errc::timed_out);
    CHECK_THROWS_AS(failed.value(), std::system_error);
}
