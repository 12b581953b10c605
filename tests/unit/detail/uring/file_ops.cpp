// The Linux backend's file operations: reads and writes at offsets past
// 4 GiB in a sparse file, reads at and past the end, open errors, and a read
// pending on a pipe ended by close() and by a stop.
#include <portico/detail/uring/file_ops.hpp>

#include "support/catch.hpp"
#include "support/uring_scheduler.hpp"

#include <portico/coro/sync_wait.hpp>
#include <portico/coro/task.hpp>
#include <portico/stop_token.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace uring = portico::detail::uring;
namespace fs = std::filesystem;
using portico::errc;
using portico::file_access;
using portico::file_creation;
using portico::file_share;
using portico::task;
using portico::test::running_uring_scheduler;

namespace {

template <class Op>
struct awaited : Op {
    using Op::Op;
    std::pair<std::error_code, std::size_t> await_resume() const noexcept { return {this->error(), this->bytes_}; }
};

/// A directory of this test's own, removed at the end.
struct temp_dir {
    temp_dir()
    {
        static std::atomic<unsigned> next{0};
        path = fs::temp_directory_path() /
               ("portico-uring-" + std::to_string(::getpid()) + "-" + std::to_string(next.fetch_add(1)));
        fs::create_directories(path);
    }
    ~temp_dir()
    {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    fs::path path;
};

using result = std::pair<std::error_code, std::size_t>;

task<result> read_at(uring::scheduler& s, const uring::file_handle& f, std::uint64_t offset, portico::mutable_buffer b)
{
    co_return co_await awaited<uring::file_read_op>(f.ref(s), offset, b);
}

task<result> write_at(uring::scheduler& s, const uring::file_handle& f, std::uint64_t offset, portico::const_buffer b)
{
    co_return co_await awaited<uring::file_write_op>(f.ref(s), offset, b);
}

} // namespace

TEST_CASE("writes and reads at offsets past 4 GiB, in a sparse file", "[uring]")
{
    running_uring_scheduler rs;
    temp_dir dir;
    uring::file_handle f;
    REQUIRE_FALSE(
        f.open(dir.path / "sparse.bin", file_access::read_write, file_creation::create_new, file_share::none));
    REQUIRE_FALSE(f.associate(rs.sched, false));
    const std::uint64_t far = (std::uint64_t{5} << 30) + 123; // past 32-bit offsets
    const std::string word = "portico";
    auto [wrote_ec, wrote] = portico::sync_wait(write_at(rs.sched, f, far, portico::buffer(word)));
    REQUIRE_FALSE(wrote_ec);
    CHECK(wrote == word.size());
    CHECK(f.size().value() == far + word.size());

    std::string back(word.size(), '\0');
    auto [read_ec, read] = portico::sync_wait(read_at(rs.sched, f, far, portico::buffer(back)));
    CHECK_FALSE(read_ec);
    CHECK(read == word.size());
    CHECK(back == word);
    // The hole reads as zeros.
    std::string hole(4, 'x');
    auto [hole_ec, hole_n] = portico::sync_wait(read_at(rs.sched, f, std::uint64_t{1} << 32, portico::buffer(hole)));
    CHECK_FALSE(hole_ec);
    CHECK(hole_n == 4);
    CHECK(hole == std::string(4, '\0'));
}

TEST_CASE("a read at or past the end of a file gives no bytes and no error", "[uring]")
{
    running_uring_scheduler rs;
    temp_dir dir;
    uring::file_handle f;
    REQUIRE_FALSE(f.open(dir.path / "short.bin", file_access::read_write, file_creation::create_new, file_share::none));
    REQUIRE_FALSE(f.associate(rs.sched, false));
    const std::string word = "abc";
    (void)portico::sync_wait(write_at(rs.sched, f, 0, portico::buffer(word)));
    std::string in(8, '\0');
    auto [short_ec, short_n] = portico::sync_wait(read_at(rs.sched, f, 1, portico::buffer(in)));
    CHECK_FALSE(short_ec);
    CHECK(short_n == 2);
    // The public awaiter turns these 0-byte reads into eof.
    for (const std::uint64_t offset : {std::uint64_t{3}, std::uint64_t{1000}}) {
        auto [ec, n] = portico::sync_wait(read_at(rs.sched, f, offset, portico::buffer(in)));
        CHECK_FALSE(ec);
        CHECK(n == 0);
    }
}

TEST_CASE("opening names what went wrong: missing, existing, a directory", "[uring]")
{
    temp_dir dir;
    uring::file_handle f;
    CHECK(f.open(dir.path / "missing.bin", file_access::read, file_creation::open_existing, file_share::read) ==
          errc::file_not_found);
    CHECK(f.open(dir.path / "no-such-dir" / "x.bin", file_access::write, file_creation::create_always,
                 file_share::none) == errc::file_not_found);
    REQUIRE_FALSE(f.open(dir.path / "there.bin", file_access::write, file_creation::create_new, file_share::none));
    f.close();
    CHECK(f.open(dir.path / "there.bin", file_access::write, file_creation::create_new, file_share::none) ==
          errc::file_exists);
    // A directory, for writing or for reading: access_denied, as on Windows.
    CHECK(f.open(dir.path, file_access::write, file_creation::open_existing, file_share::none) == errc::access_denied);
    CHECK(f.open(dir.path, file_access::read, file_creation::open_existing, file_share::none) == errc::access_denied);
    CHECK_FALSE(f.is_open());
    CHECK(f.size().error() == errc::bad_state);
}

TEST_CASE("a read pending on a pipe ends with operation_aborted on close() and on a stop", "[uring]")
{
    running_uring_scheduler rs;
    temp_dir dir;
    const fs::path fifo = dir.path / "pipe";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    std::string in(4, '\0');
    {
        // Read and write: opening it does not wait for a writer, and a read
        // waits for bytes that never come.
        uring::file_handle f;
        REQUIRE_FALSE(f.open(fifo, file_access::read_write, file_creation::open_existing, file_share::read_write));
        REQUIRE_FALSE(f.associate(rs.sched, false));
        portico::stop_source stop;
        result r;
        std::thread waiter(
            [&] { r = portico::sync_wait(read_at(rs.sched, f, 0, portico::buffer(in)), stop.get_token()); });
        stop.request_stop();
        waiter.join();
        CHECK(r.first == errc::operation_aborted);
    }
    {
        uring::file_handle f;
        REQUIRE_FALSE(f.open(fifo, file_access::read_write, file_creation::open_existing, file_share::read_write));
        REQUIRE_FALSE(f.associate(rs.sched, false));
        result r;
        // Closed once the read is on its way to a pool thread (its hop is
        // submitted: the counter's release orders the waiter's use of the
        // handle before the close), whether or not it has started there.
        const std::uint64_t before = rs.sched.submissions();
        std::thread waiter([&] { r = portico::sync_wait(read_at(rs.sched, f, 0, portico::buffer(in))); });
        while (rs.sched.submissions() == before) std::this_thread::yield();
        f.close();
        waiter.join();
        CHECK(r.first == errc::operation_aborted);
    }
}
