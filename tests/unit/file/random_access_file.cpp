#include <portico/file/random_access_file.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/coro/when_all.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/allocation_count.hpp"
#include "support/temp_file.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

using portico::buffer;
using portico::errc;
using portico::file_access;
using portico::file_creation;
using portico::file_share;
using portico::random_access_file;
using portico::task;
using portico::test::content;
using portico::test::content_byte;
using portico::test::temp_file;

namespace {

// A new, empty file at `path`, open for reading and writing.
random_access_file created(portico::io_context& ctx, const temp_file& path)
{
    random_access_file f(ctx);
    auto [ec] = f.open(path.path(), file_access::read_write, file_creation::create_new);
    REQUIRE_FALSE(ec);
    return f;
}

} // namespace

PORTICO_IO_TEST_CASE("open: each creation disposition, and the errors it reports", "[random_access_file]")
{
    temp_file path;
    random_access_file f(ctx);
    CHECK_FALSE(f.is_open());

    auto [missing] = f.open(path.path(), file_access::read);
    CHECK(missing == errc::file_not_found);
    CHECK(missing == std::errc::no_such_file_or_directory);
    auto [missing_truncate] = f.open(path.path(), file_access::write, file_creation::truncate_existing);
    CHECK(missing_truncate == errc::file_not_found);

    auto [created] = f.open(path.path(), file_access::read_write, file_creation::create_new);
    REQUIRE_FALSE(created);
    CHECK(f.is_open());
    auto [twice] = f.open(path.path(), file_access::read);
    CHECK(twice == errc::bad_state);
    const std::string hello = "hello";
    auto [write_ec, written] = co_await f.write_some_at(0, buffer(hello));
    CHECK_FALSE(write_ec);
    CHECK(written == hello.size());
    f.close();
    CHECK_FALSE(f.is_open());

    auto [exists] = f.open(path.path(), file_access::write, file_creation::create_new);
    CHECK(exists == errc::file_exists);
    CHECK(exists == std::errc::file_exists);

    // open_always keeps the content; truncate_existing and create_always empty it.
    REQUIRE_FALSE(f.open(path.path(), file_access::read, file_creation::open_always).error());
    CHECK(f.size().value() == hello.size());
    f.close();
    REQUIRE_FALSE(f.open(path.path(), file_access::write, file_creation::truncate_existing).error());
    CHECK(f.size().value() == 0);
    f.close();
    REQUIRE_FALSE(f.open(path.path(), file_access::write, file_creation::create_always).error());
    CHECK(f.size().value() == 0);

    f.close();

    // A directory is not a file.
    const auto dir = path.path().parent_path();
    auto [directory] = f.open(dir, file_access::read);
    CHECK(directory == errc::access_denied);
    CHECK(directory == std::errc::permission_denied);
    auto [directory_write] = f.open(dir, file_access::write);
    CHECK(directory_write == errc::access_denied);

    // A closed file: operations abort, synchronous members report bad_state.
    char byte = 0;
    auto [closed_ec, closed_n] = co_await f.read_some_at(0, buffer(&byte, 1));
    CHECK(closed_ec == errc::operation_aborted);
    CHECK(closed_n == 0);
    CHECK(f.size().error() == errc::bad_state);
    CHECK(f.resize(10).error() == errc::bad_state);
}

#if PORTICO_BACKEND_IOCP
PORTICO_IO_TEST_CASE("open: a holder's sharing mode decides who else may open the file", "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);
    f.close();
    REQUIRE_FALSE(f.open(path.path(), file_access::write, file_creation::open_existing).error());

    // Held without sharing: nobody else may open it, and a holder that does
    // not share blocks this one's open.
    random_access_file other(ctx);
    auto [in_use] = other.open(path.path(), file_access::read);
    CHECK(in_use == errc::file_in_use);
    CHECK(in_use == std::errc::device_or_resource_busy);
    f.close();
    REQUIRE_FALSE(f.open(path.path(), file_access::read, file_creation::open_existing, file_share::read).error());
    REQUIRE_FALSE(other.open(path.path(), file_access::read, file_creation::open_existing, file_share::read).error());
    other.close();
    auto [wants_write] =
        other.open(path.path(), file_access::write, file_creation::open_existing, file_share::read_write);
    CHECK(wants_write == errc::file_in_use); // f shares reading only
    co_return;
}
#else
PORTICO_IO_TEST_CASE("open: Linux has no sharing modes, so file_share refuses nobody", "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);
    f.close();
    REQUIRE_FALSE(f.open(path.path(), file_access::write, file_creation::open_existing, file_share::none).error());
    // Where Windows says file_in_use (the holder shares nothing), Linux opens.
    random_access_file other(ctx);
    CHECK_FALSE(other.open(path.path(), file_access::read_write).error());
    const std::string bytes = "shared";
    auto [write_ec, written] = co_await f.write_all_at(0, buffer(bytes));
    REQUIRE_FALSE(write_ec);
    std::string back(bytes.size(), '\0');
    auto [read_ec, read] = co_await other.read_all_at(0, buffer(back));
    CHECK_FALSE(read_ec);
    CHECK(back == bytes);
}
#endif

PORTICO_IO_TEST_CASE("writes and reads at offsets round-trip; size and resize", "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);

    // Out of order: the second half first, then the first.
    const auto data = content(0, 300'000);
    auto [w2_ec, w2] = co_await f.write_all_at(150'000, buffer(data.data() + 150'000, 150'000));
    CHECK_FALSE(w2_ec);
    CHECK(w2 == 150'000);
    CHECK(f.size().value() == 300'000);
    auto [w1_ec, w1] = co_await f.write_all_at(0, buffer(data.data(), 150'000));
    CHECK_FALSE(w1_ec);
    CHECK(w1 == 150'000);

    std::vector<char> got(1000);
    auto [r_ec, r] = co_await f.read_some_at(123'456, buffer(got));
    CHECK_FALSE(r_ec);
    REQUIRE(r == got.size());
    CHECK(got == content(123'456, 1000));

    auto [cut_ec] = f.resize(1000);
    CHECK_FALSE(cut_ec);
    CHECK(f.size().value() == 1000);
    REQUIRE_FALSE(f.resize(5000).error());
    CHECK(f.size().value() == 5000);
    std::vector<char> tail(4000, 'x');
    auto [t_ec, t] = co_await f.read_all_at(1000, buffer(tail));
    CHECK_FALSE(t_ec);
    CHECK(t == 4000);
    CHECK(tail == std::vector<char>(4000, '\0')); // the extension reads as zeros
}

PORTICO_IO_TEST_CASE("reads at and past the end are eof; one that crosses it is short; empty ones are not eof",
                     "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);
    const auto data = content(0, 100);
    REQUIRE_FALSE((co_await f.write_all_at(0, buffer(data))).error());

    std::array<char, 64> got{};
    auto [short_ec, short_n] = co_await f.read_some_at(80, buffer(got));
    CHECK_FALSE(short_ec);
    REQUIRE(short_n == 20);
    CHECK(std::vector<char>(got.begin(), got.begin() + 20) == content(80, 20));

    auto [at_end, at_end_n] = co_await f.read_some_at(100, buffer(got));
    CHECK(at_end == errc::eof);
    CHECK(at_end_n == 0);
    auto [past_end, past_end_n] = co_await f.read_some_at(1'000'000, buffer(got));
    CHECK(past_end == errc::eof);
    CHECK(past_end_n == 0);

    const auto before = ctx.statistics();
    auto [empty_ec, empty_n] = co_await f.read_some_at(100, buffer(got.data(), 0));
    CHECK_FALSE(empty_ec); // a zero-length read is not eof, even at the end
    CHECK(empty_n == 0);
    auto [empty_write_ec, empty_written] = co_await f.write_some_at(0, buffer(data.data(), 0));
    CHECK_FALSE(empty_write_ec);
    CHECK(empty_written == 0);
    CHECK(ctx.statistics().file_read_calls == before.file_read_calls); // no system call
    CHECK(ctx.statistics().file_write_calls == before.file_write_calls);

    // read_all_at stops at the end, with eof and what it got.
    std::vector<char> all(150);
    auto [all_ec, all_n] = co_await f.read_all_at(0, buffer(all));
    CHECK(all_ec == errc::eof);
    CHECK(all_n == 100);
}

PORTICO_IO_TEST_CASE("offsets above 4 GiB in a sparse file", "[random_access_file]")
{
    temp_file path(L"sparse");
    portico::test::make_sparse(path.path());
    random_access_file f(ctx);
    REQUIRE_FALSE(f.open(path.path(), file_access::read_write, file_creation::open_existing).error());

    // Across the 4 GiB boundary (the offset's high word changes inside the
    // write), and distant past it.
    constexpr std::uint64_t four_gib = std::uint64_t{1} << 32;
    const std::uint64_t at_boundary = four_gib - 5000;
    const std::uint64_t distant = 5 * four_gib + 12345;
    const auto boundary_data = content(at_boundary, 10'000);
    const auto distant_data = content(distant, 70'000);
    auto [boundary_ec, boundary_n] = co_await f.write_all_at(at_boundary, buffer(boundary_data));
    CHECK_FALSE(boundary_ec);
    CHECK(boundary_n == boundary_data.size());
    auto [distant_ec, distant_n] = co_await f.write_all_at(distant, buffer(distant_data));
    CHECK_FALSE(distant_ec);
    CHECK(distant_n == distant_data.size());
    CHECK(f.size().value() == distant + distant_data.size());

    std::vector<char> got(10'000);
    auto [r1_ec, r1] = co_await f.read_all_at(at_boundary, buffer(got));
    CHECK_FALSE(r1_ec);
    CHECK(r1 == got.size());
    CHECK(got == boundary_data);
    // A read at exactly 4 GiB must not land at 0: its low word is 0.
    std::vector<char> at_four(100);
    REQUIRE_FALSE((co_await f.read_all_at(four_gib, buffer(at_four))).error());
    CHECK(at_four == content(four_gib, 100));
    got.assign(distant_data.size(), 0);
    auto [r2_ec, r2] = co_await f.read_all_at(distant, buffer(got));
    CHECK_FALSE(r2_ec);
    CHECK(got == distant_data);
    // The hole reads as zeros; past the end is eof.
    std::vector<char> hole(100, 'x');
    REQUIRE_FALSE((co_await f.read_all_at(3 * four_gib, buffer(hole))).error());
    CHECK(hole == std::vector<char>(100, '\0'));
    auto [end_ec, end_n] = co_await f.read_some_at(distant + distant_data.size(), buffer(hole));
    CHECK(end_ec == errc::eof);
    CHECK(end_n == 0);
    f.close(); // the temp_file deletes it
}

PORTICO_IO_TEST_CASE("read_all_at and write_all_at cover every buffer of a sequence, one call per buffer",
                     "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);

    const auto data = content(7, 3000);
    std::array<portico::const_buffer, 4> pieces{buffer(data.data(), 1000), buffer(data.data() + 1000, 0),
                                                buffer(data.data() + 1000, 1500), buffer(data.data() + 2500, 500)};
    const auto calls_before = ctx.statistics().file_write_calls;
    auto [w_ec, w] = co_await f.write_all_at(7, pieces);
    CHECK_FALSE(w_ec);
    CHECK(w == 3000);
    CHECK(ctx.statistics().file_write_calls - calls_before == 3); // the empty buffer costs nothing

    // write_some_at takes only the first non-empty buffer.
    const char marks[2] = {'a', 'b'};
    std::array<portico::const_buffer, 3> one_of{buffer(marks, 0), buffer(marks, 1), buffer(marks + 1, 1)};
    auto [some_ec, some] = co_await f.write_some_at(0, one_of);
    CHECK_FALSE(some_ec);
    CHECK(some == 1);

    std::array<char, 8> a{};
    std::vector<char> b(3000);
    std::array<portico::mutable_buffer, 2> into{buffer(a), buffer(b)};
    auto [r_ec, r] = co_await f.read_all_at(0, into);
    CHECK(r_ec == errc::eof); // room for 3008 bytes, and the file holds 3007
    CHECK(r == 3007);
    CHECK(a[0] == 'a');
    CHECK(std::vector<char>(a.begin() + 1, a.begin() + 7) == std::vector<char>(6, '\0'));
    CHECK(a[7] == content_byte(7));
    CHECK(std::vector<char>(b.begin(), b.begin() + 2999) == content(8, 2999));
}

PORTICO_IO_TEST_CASE("many coroutines write and read one file at once, each at its own offset", "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);
    constexpr std::size_t writers = 64;
    constexpr std::size_t piece = 16 * 1024;
    int failures = 0;
    {
        portico::task_group group;
        for (std::size_t i = 0; i < writers; ++i) {
            group.spawn([](random_access_file& file, std::uint64_t at, int& bad) -> task<> {
                const auto data = content(at, piece);
                auto [ec, n] = co_await file.write_all_at(at, buffer(data));
                if (ec || n != piece) ++bad;
                std::vector<char> back(piece);
                auto [rec, rn] = co_await file.read_all_at(at, buffer(back));
                if (rec || rn != piece || back != data) ++bad;
            }(f, i * piece, failures));
        }
        co_await group.join();
    }
    CHECK(failures == 0);
    CHECK(f.size().value() == writers * piece);
}

PORTICO_IO_TEST_CASE("steady-state file reads and writes make no heap allocation", "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);
    std::array<char, 512> out{};
    std::array<char, 512> in{};
    int failures = 0;
    std::optional<std::uint64_t> before;
    for (int i = 0; i < 2200; ++i) {
        if (i == 200) before = portico::test::allocations_now();
        out.fill(static_cast<char>(i));
        const std::uint64_t at = static_cast<std::uint64_t>(i % 64) * out.size();
        auto [w_ec, w] = co_await f.write_some_at(at, buffer(out));
        auto [r_ec, r] = co_await f.read_some_at(at, buffer(in));
        if (w_ec || r_ec || w != out.size() || r != in.size() || in != out) ++failures;
    }
    const std::optional<std::uint64_t> after = portico::test::allocations_now();
    CHECK(failures == 0);
    if (before && after) {
        CHECK(*after - *before <= portico::test::cache_growth_allowance); // over 4,000 operations
    } else {
        WARN("allocations are not counted in this build (ASan or TSan)");
    }
    INFO("inline completions: " << ctx.statistics().inline_completions);
    SUCCEED();
}

PORTICO_IO_TEST_CASE("a file's operations are plain awaitables: when_all takes them directly", "[random_access_file]")
{
    temp_file path;
    random_access_file f = created(ctx, path);
    const std::string a = "first", b = "second";
    auto [wa, wb] = co_await portico::when_all(f.write_some_at(0, buffer(a)), f.write_some_at(a.size(), buffer(b)));
    CHECK_FALSE(wa.error());
    CHECK_FALSE(wb.error());
    std::string got(a.size() + b.size(), '\0');
    auto [ec, n] = co_await f.read_all_at(0, buffer(got));
    CHECK_FALSE(ec);
    CHECK(got == a + b);

    // Moving a file keeps its association: the moved-to object works.
    random_access_file moved = std::move(f);
    CHECK_FALSE(f.is_open());
    auto [m_ec, m_n] = co_await moved.read_all_at(0, buffer(got));
    CHECK_FALSE(m_ec);
    CHECK(m_n == got.size());
}
