#include <portico/framing/detail/send_node.hpp>

#include <portico/error.hpp>

#include "support/catch.hpp"

#include <coroutine>

using portico::detail::resume_list;
using portico::detail::send_node;
using state = portico::detail::resume_handshake::state;

TEST_CASE("resume_list resumes only writers that already suspended", "[send_node]")
{
    int resumed = 0;
    struct probe {
        struct promise_type {
            probe get_return_object() noexcept { return {}; }
            std::suspend_never initial_suspend() noexcept { return {}; }
            std::suspend_never final_suspend() noexcept { return {}; }
            void return_void() noexcept {}
            void unhandled_exception() noexcept {}
        };
    };
    send_node waiting, starting;
    waiting.handshake.suspend(); // this writer has suspended; `starting` has not
    struct suspend_into {
        send_node& n;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) const noexcept { n.waiter = h; }
        void await_resume() const noexcept {}
    };
    [](send_node& n, int& count) -> probe {
        co_await suspend_into{n};
        ++count;
    }(waiting, resumed);
    resume_list done;
    done.finish(waiting, {});
    done.finish(starting, make_error_code(portico::errc::eof));
    CHECK(resumed == 0);
    done.resume_all();
    CHECK(resumed == 1);
    CHECK(starting.handshake.load() == state::done);
    CHECK(starting.result == portico::errc::eof);
}
