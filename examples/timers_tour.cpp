// A first portico program: coroutines on a pool, a sleep, and a deadline.
#include <portico/portico.hpp>

#include <chrono>
#include <cstdio>

using namespace std::chrono_literals;

portico::task<portico::io_result<int>> slow_answer(portico::io_context& ctx, std::chrono::milliseconds delay)
{
    auto [ec] = co_await ctx.sleep_for(delay); // operation_aborted if asked to stop
    co_return portico::io_result<int>(ec, 42);
}

portico::task<> tour(portico::io_context& ctx)
{
    co_await ctx.schedule(); // from here on, a pool thread runs this coroutine
    auto [ec, answer] = co_await slow_answer(ctx, 20ms);
    std::printf("answer: %d (%s)\n", answer, ec ? ec.message().c_str() : "ok");

    auto [late, ignored] = co_await portico::with_timeout(ctx, 10ms, slow_answer(ctx, 1s));
    std::printf("with a 10 ms deadline: %s\n", late.message().c_str());
}

int main()
{
    portico::io_context ctx;
    portico::thread_pool pool(ctx, 2); // two threads serve every coroutine
    portico::sync_wait(tour(ctx));
    ctx.stop(); // the pool returns once nothing is outstanding
}
