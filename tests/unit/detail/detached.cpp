#include <portico/detail/detached.hpp>

#include "support/catch.hpp"

#include <coroutine>
#include <exception>
#include <stdexcept>

using portico::detail::detached;

namespace {

struct owner {
    int ends = 0;
    std::ptrdiff_t frames_at_end = -1;
    std::exception_ptr error;
    std::coroutine_handle<> parked;
};

void record_end(void* o, std::exception_ptr error) noexcept
{
    auto* self = static_cast<owner*>(o);
    ++self->ends;
    self->frames_at_end = portico::debug::live_frames();
    self->error = std::move(error);
}

// Suspends until the test resumes it by hand.
struct park {
    owner& o;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) const noexcept { o.parked = h; }
    void await_resume() const noexcept {}
};

detached body(owner& o, bool fail)
{
    co_await park{o};
    if (fail) throw std::runtime_error("escaped");
}

} // namespace

TEST_CASE("detached frees its frame before telling its owner", "[detached]")
{
    const auto frames = portico::debug::live_frames();
    owner o;
    body(o, false).start({}, &record_end, &o);
    CHECK(o.ends == 0); // suspended in park
    CHECK(portico::debug::live_frames() == frames + 1);
    o.parked.resume();
    CHECK(o.ends == 1);
    CHECK(o.frames_at_end == frames);
    CHECK_FALSE(o.error);
}

TEST_CASE("detached hands an escaped exception to its end hook", "[detached]")
{
    owner o;
    body(o, true).start({}, &record_end, &o);
    o.parked.resume();
    REQUIRE(o.ends == 1);
    REQUIRE(o.error);
    CHECK_THROWS_AS(std::rethrow_exception(o.error), std::runtime_error);
}

TEST_CASE("detached never started is destroyed with its handle", "[detached]")
{
    const auto frames = portico::debug::live_frames();
    owner o;
    {
        auto d = body(o, false);
        // Not started: the body has not run. (An optimising compiler may
        // elide this frame's allocation altogether, so its count is not
        // checked here; only that nothing is left afterwards.)
        CHECK(o.parked == nullptr);
    }
    CHECK(portico::debug::live_frames() == frames);
    CHECK(o.ends == 0);
}
