// Which shapes of "co_await in a condition" does this compiler get right?
// Built and run by tests/drivers/gcc-pr106188.sh with every compiler at hand.
//
// GCC before 12.3 (GCC bug 106188) lays out the coroutine frame wrongly when a
// co_await sits in the condition of an if, while, for or switch and no block
// around that statement, up to the function body, declares a local variable.
// The awaiting coroutine suspends and the awaited one never starts: under
// sync_wait or an io_context the caller waits forever, silently.
//
// Every case here completes synchronously, so one resume() of the outer task
// must run it to the end. A case the compiler got wrong is not done afterwards
// (or, depending on what the wrong frame layout overwrote, crashes): the
// program does not hang and needs no timeout. Each case runs in a process of
// its own (`gcc-pr106188 N`), so one wrong case cannot disturb another.
// portico's own code never has this shape (tests/drivers/check-await-conditions.py);
// this file has it on purpose, and is the one file that check skips.
#include <portico/coro/task.hpp>
#include <portico/error.hpp>

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <system_error>

using portico::task;

namespace {

int started = 0; // how many awaited coroutines began to run

task<bool> yes()
{
    ++started;
    co_return true;
}

task<int> two()
{
    ++started;
    co_return 2;
}

task<portico::io_result<int>> succeed()
{
    ++started;
    co_return portico::io_result<int>(std::error_code(), 1);
}

bool always = true; // not a constant, so the compiler cannot fold a condition away

// The trap: co_await in a condition, no local variable in any enclosing block.
task<int> if_await()
{
    if (co_await yes()) co_return 1;
    co_return 0;
}

task<int> if_not_await()
{
    if (!co_await yes()) co_return 0;
    co_return 1;
}

task<int> if_await_member()
{
    if ((co_await succeed()).error()) co_return 0;
    co_return 1;
}

task<int> if_result_as_bool()
{
    if (co_await succeed()) co_return 1; // io_result's explicit operator bool: success
    co_return 0;
}

task<int> if_and_await()
{
    if (always && co_await yes()) co_return 1;
    co_return 0;
}

task<int> while_await()
{
    while (co_await yes()) co_return 1;
    co_return 0;
}

task<int> for_await()
{
    for (; co_await yes();) co_return 1;
    co_return 0;
}

task<int> do_while_await()
{
    do {
    } while (!co_await yes());
    co_return 1;
}

task<int> switch_await()
{
    switch (co_await two()) {
    case 2: co_return 1;
    default: co_return 0;
    }
}

// Not a statement's condition: && and ?: in an expression.
task<int> and_in_expression() { co_return (always && co_await yes()) ? 1 : 0; }

task<int> ternary_in_expression() { co_return co_await yes() ? 1 : 0; }

// The workaround: the result bound to a variable, then tested.
task<int> bound_first()
{
    bool ok = co_await yes();
    if (ok) co_return 1;
    co_return 0;
}

task<int> bound_in_if_init()
{
    if (auto [ec, n] = co_await succeed(); !ec) co_return n;
    co_return 0;
}

task<int> declared_in_condition()
{
    if (auto result = co_await succeed()) co_return result.value();
    co_return 0;
}

task<int> bound_in_loop()
{
    for (;;) {
        bool more = co_await yes();
        if (!more) co_return 0;
        co_return 1;
    }
}

// Right only by luck: some other local in the function body hides the bug.
task<int> if_await_other_local()
{
    int calls = 0;
    if (co_await yes()) ++calls;
    co_return calls;
}

struct test_case {
    const char* name;
    const char* kind; // "condition", "expression", "bound" or "luck"
    task<int> (*make)();
};

const test_case cases[] = {
    {"if (co_await t)", "condition", if_await},
    {"if (!co_await t)", "condition", if_not_await},
    {"if ((co_await t).error())", "condition", if_await_member},
    {"if (co_await io_result)", "condition", if_result_as_bool},
    {"if (x && co_await t)", "condition", if_and_await},
    {"while (co_await t)", "condition", while_await},
    {"for (; co_await t;)", "condition", for_await},
    {"do {} while (!co_await t)", "condition", do_while_await},
    {"switch (co_await t)", "condition", switch_await},
    {"(x && co_await t) ? :", "expression", and_in_expression},
    {"co_await t ? :", "expression", ternary_in_expression},
    {"bool b = co_await t; if (b)", "bound", bound_first},
    {"if (auto [ec, n] = co_await t; !ec)", "bound", bound_in_if_init},
    {"if (auto r = co_await t)", "bound", declared_in_condition},
    {"for (;;) { bool b = co_await t; ... }", "bound", bound_in_loop},
    {"int other; if (co_await t)", "luck", if_await_other_local},
};

} // namespace

int main(int argc, char** argv)
{
    // No argument: the list of cases, "N KIND SHAPE" per line. With N: runs
    // case N; exit status 0 if the compiler got it right, 1 if not.
    const int count = static_cast<int>(std::size(cases));
    if (argc < 2) {
        for (int i = 0; i < count; ++i) std::printf("%d %s %s\n", i, cases[i].kind, cases[i].name);
        return 0;
    }
    const int index = std::atoi(argv[1]);
    if (index < 0 || index >= count) return 2;
    task<int> t = cases[index].make();
    t.handle().resume(); // everything completes inline: one resume runs it all
    const bool done = t.handle().done();
    const int result = done ? t.handle().promise().take_result() : -1;
    // NOTE: a wrongly compiled frame is leaked, not destroyed: its layout is
    // what the compiler got wrong.
    if (!done) (void)t.release();
    return done && result == 1 && started == 1 ? 0 : 1;
}
