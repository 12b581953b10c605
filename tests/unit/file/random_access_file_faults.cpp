// Fault and race tests for random_access_file: cancel, close and stop with a
// read pending, a frame destroyed with its read pending, cancellation racing
// completion. A disk file's reads finish at once, so the pending cases read
// a named pipe (support/temp_file.hpp) through the same class.
#include <portico/file/random_access_file.hpp>

#include <portico/coro/task.hpp>
#include <portico/coro/when_all.hpp>
#include <portico/deadline.hpp>
#include <portico/stop_token.hpp>

#include "support/catch.hpp"
#include "support/co_test.hpp"
#include "support/temp_file.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

using namespace std::chrono_literals;
using portico::buffer;
using portico::errc;
using portico::file_access;
using portico::file_creation;
using portico::io_context;
using portico::io_result;
using portico::random_access_file;
using portico::task;
using portico::test::pipe_pair;

namespace {

random_access_file pipe_reader(io_context& ctx, pipe_pair& pipe)
{
    random_access_file f(ctx);
    auto [ec] = f.assign(pipe.take_client());
    REQUIRE_FALSE(ec);
    return f;
}

} // namespace

PORTICO_IO_TEST_CASE("close and cancel with a read pending resume it once with operation_aborted",
                     "[random_access_file_faults]")
{
    for (bool use_close : {true, false}) {
        pipe_pair pipe;
        random_access_file f = pipe_reader(ctx, pipe);
        int resumed = 0;
        auto reader = [](random_access_file& file, int& count) -> task<io_result<std::size_t>> {
            char byte;
            auto result = co_await file.read_some_at(0, buffer(&byte, 1));
            ++count;
            co_return result;
        };
        auto stopper = [](io_context& c, random_access_file& file, bool close, std::uint64_t calls_before) -> task<> {
            // when_all runs the reader until it suspends, so its ReadFile is
            // pending here: no sleep, no race.
            CHECK(c.statistics().file_read_calls == calls_before + 1);
            if (close) {
                file.close();
            } else {
                file.cancel();
            }
            co_return;
        };
        const auto calls_before = ctx.statistics().file_read_calls;
        auto [result, ignored] =
            co_await portico::when_all(reader(f, resumed), stopper(ctx, f, use_close, calls_before));
        (void)ignored;
        CHECK(resumed == 1);
        CHECK(result.error() == errc::operation_aborted);
        CHECK(result.value_unchecked() == 0);
        if (!use_close) {
            // Cancelled, not closed: the file still works.
            const char sent = 'k';
            pipe.write(&sent, 1);
            char got = 0;
            auto [ec, n] = co_await f.read_some_at(0, buffer(&got, 1));
            CHECK_FALSE(ec);
            CHECK(got == 'k');
        }
    }
}

PORTICO_IO_TEST_CASE("a stop request or a deadline cancels a pending read", "[random_access_file_faults]")
{
    pipe_pair pipe;
    random_access_file f = pipe_reader(ctx, pipe);
    char byte = 0;
    auto [ec, n] = co_await portico::with_timeout(ctx, 20ms, f.read_some_at(0, buffer(&byte, 1)));
    CHECK(ec == errc::timed_out);
    CHECK(n == 0);

    auto reader = [](random_access_file& file, char& out) -> task<io_result<std::size_t>> {
        co_return co_await file.read_some_at(0, buffer(&out, 1));
    }(f, byte);
    portico::stop_source source;
    reader.set_stop_token(source.get_token());
    auto stopper = [](portico::stop_source& s) -> task<> {
        s.request_stop();
        co_return;
    };
    auto [result, ignored] = co_await portico::when_all(std::move(reader), stopper(source));
    (void)ignored;
    CHECK(result.error() == errc::operation_aborted);
    CHECK(result.error() == std::errc::operation_canceled);
}

PORTICO_IO_TEST_CASE("a pipe whose writer closed reads as eof", "[random_access_file_faults]")
{
    pipe_pair pipe;
    random_access_file f = pipe_reader(ctx, pipe);
    const char sent[3] = {'a', 'b', 'c'};
    pipe.write(sent, 3);
    pipe.close_server();
    std::array<char, 8> got{};
    auto [ec, n] = co_await f.read_all_at(0, buffer(got));
    CHECK(ec == errc::eof);
    CHECK(n == 3);
    auto [again, again_n] = co_await f.read_some_at(0, buffer(got));
    CHECK(again == errc::eof);
    CHECK(again_n == 0);
}

PORTICO_IO_TEST_CASE("destroying a task that owns a file with a pending read: no crash, no leak",
                     "[random_access_file_faults]")
{
    // As the socket test: the frame goes while the system holds the read's
    // OVERLAPPED inside it; the frame's memory stays until the aborted
    // completion arrives, and the coroutine never resumes. The baseline check
    // then sees the frame freed and the pipe's handles closed.
    auto owner = [](random_access_file file, std::atomic<int>& resumed) -> task<> {
        std::array<char, 64> data;
        (void)co_await file.read_some_at(0, buffer(data));
        ++resumed;
    };
    std::atomic<int> resumed{0};
    for (int round = 0; round < 50; ++round) {
        pipe_pair pipe;
        task<> t = owner(pipe_reader(ctx, pipe), resumed);
        t.handle().resume(); // runs until the read is pending
        t = {};              // orphans the read, closes the file
    }
    CHECK(resumed == 0);
    co_return;
}

PORTICO_IO_TEST_CASE("cancel racing completion on a disk file, 2,000 times: each read resumes once, whole or aborted",
                     "[random_access_file_faults]")
{
    portico::test::temp_file path;
    random_access_file f(ctx);
    REQUIRE_FALSE(f.open(path.path(), file_access::read_write, file_creation::create_new).error());
    std::vector<char> data(64 * 1024);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 % 251);
    REQUIRE_FALSE((co_await f.write_all_at(0, buffer(data))).error());

    int aborted = 0, completed = 0, wrong = 0;
    std::vector<char> got(4096);
    for (int round = 0; round < 2000; ++round) {
        const std::uint64_t at = static_cast<std::uint64_t>(round % 16) * got.size();
        auto source = std::make_shared<portico::stop_source>();
        auto one_read = [](random_access_file& file, std::uint64_t offset,
                           std::vector<char>& into) -> task<io_result<std::size_t>> {
            co_return co_await file.read_some_at(offset, buffer(into));
        }(f, at, got);
        one_read.set_stop_token(source->get_token());
        // The stop request races the read from another pool thread (or, with
        // one thread, comes before or after it).
        ctx.post([source] { source->request_stop(); });
        auto [ec, n] = co_await std::move(one_read);
        if (ec == errc::operation_aborted) {
            ++aborted;
            wrong += n != 0;
        } else if (ec) {
            ++wrong;
        } else {
            ++completed;
            wrong += n != got.size() || !std::equal(got.begin(), got.end(), data.begin() + static_cast<long>(at));
        }
    }
    INFO(completed << " completed, " << aborted << " aborted");
    CHECK(wrong == 0);
    CHECK(aborted + completed == 2000);
}
