#!/usr/bin/env python3
"""Keeps co_await out of conditions in portico's code and docs.

GCC before 12.3 (GCC bug 106188; Debian 12's GCC 12.2, native and mingw-w64)
miscompiles a coroutine with a co_await in the condition of an if, while,
do-while, for or switch when no block around that statement declares a local
variable: the awaited coroutine never starts and the caller waits forever.
docs/platform-notes.md has the details; tests/drivers/gcc-pr106188.sh shows it.

This check fails, with file:line, on
  - a co_await anywhere in the condition of if / while / do-while / for /
    switch (also inside calls or parentheses there), unless the condition
    declares a variable (`if (auto r = co_await op)`), and
  - a co_await that is an operand of &&, || or ?: (GCC 12.2 gets those
    right in a plain expression, but each is a condition by another name and
    one edit away from an if; flagging them too leaves no judgment call).
  - a co_await inside a braced initializer of a co_return's operand
    (`co_return T{x, f(co_await op)};`), which GCC 12.2 also gets wrong.
The fix is always the same: bind the result first (`auto [ec, n] = co_await
op;` then test `ec`, or `if (auto [ec, n] = co_await op; ec)`).

It reads include/, examples/, tests/ and bench/ (C++ files) and the C++ code
blocks of README.md and docs/ (Markdown). Before that it runs itself on
cases it must flag and cases it must pass: a change that blinds it fails
instead of passing everything. Run by scripts/test.sh. Standard library only.
    check-await-conditions.py [FILE...]     default: the whole tree
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPP_DIRS = ("include", "examples", "tests", "bench")
CPP_SUFFIXES = {".hpp", ".cpp", ".h", ".cc", ".ipp", ".inl"}
# The reproducer of the compiler bug has the pattern on purpose.
SKIP = {"tests/drivers/gcc-pr106188.cpp"}
CONTROL = {"if", "while", "switch", "for"}
WORKAROUND = "bind the result first: `auto r = co_await ...;` then test r (docs/platform-notes.md)"

TOKEN = re.compile(r"""
    (?P<ident>[A-Za-z_]\w*)
  | (?P<number>\.?\d(?:[\w.]|'(?=\w)|[eEpP][+-])*)
  | (?P<punct>::|->|&&|\|\||==|!=|<=|>=|\+\+|--|<<|>>|[-+*/%&|^!~=<>?:;,.()\[\]{}#])
""", re.VERBOSE)


def strip(code: str) -> str:
    """Blanks comments, string and character literals and preprocessor lines,
    keeping every newline so that line numbers stay right."""
    out: list[str] = []
    i, n = 0, len(code)
    line_start = True
    while i < n:
        c = code[i]
        if line_start and c == "#":  # a preprocessor line, with its continuations
            while i < n and (code[i] != "\n" or code[i - 1] == "\\"):
                out.append("\n" if code[i] == "\n" else " ")
                i += 1
            continue
        if c == "\n":
            line_start = True
            out.append(c)
            i += 1
            continue
        if not c.isspace():
            line_start = False
        if code.startswith("//", i):
            while i < n and code[i] != "\n":
                out.append(" ")
                i += 1
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("".join("\n" if ch == "\n" else " " for ch in code[i:end]))
            i = end
        elif c == "R" and code.startswith('R"', i) and (i == 0 or not (code[i - 1].isalnum() or code[i - 1] == "_")):
            paren = code.find("(", i + 2)
            delim = code[i + 2:paren]
            end = code.find(")" + delim + '"', paren)
            end = n if end < 0 else end + len(delim) + 2
            out.append('""' + "".join("\n" if ch == "\n" else " " for ch in code[i + 2:end]))
            i = end
        elif c in "\"'":
            if c == "'" and i > 0 and code[i - 1].isalnum():  # a digit separator: 1'000
                out.append(c)
                i += 1
                continue
            j = i + 1
            while j < n and code[j] != c and code[j] != "\n":
                j += 2 if code[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tokenize(code: str, first_line: int = 1) -> list[tuple[str, int]]:
    tokens = []
    line = first_line
    pos = 0
    for m in TOKEN.finditer(code):
        line += code.count("\n", pos, m.start())
        pos = m.start()
        tokens.append((m.group(0), line))
    return tokens


def findings(tokens: list[tuple[str, int]]) -> list[tuple[int, str]]:
    """(line, what) for every co_await in a condition or an operand of &&, || or ?:."""
    text = [t for t, _ in tokens]
    # The tree of brackets: kids[o] are the tokens directly inside the opener o
    # (-1: the top level), closers left out; up[i] is the opener around token i.
    kids: dict[int, list[int]] = {-1: []}
    up = [-1] * len(text)
    stack = [-1]
    for i, t in enumerate(text):
        if t in ")]}" and len(stack) > 1:
            stack.pop()
            continue
        up[i] = stack[-1]
        kids[stack[-1]].append(i)
        if t in "([{":
            stack.append(i)
            kids[i] = []
    where = {k: n for siblings in kids.values() for n, k in enumerate(siblings)}

    def segment(node: int, bounds: set[str]) -> list[int]:
        """The siblings of `node` between the nearest bounds on either side."""
        siblings = kids[up[node]]
        lo = hi = where[node]
        while lo > 0 and text[siblings[lo - 1]] not in bounds:
            lo -= 1
        while hi + 1 < len(siblings) and text[siblings[hi + 1]] not in bounds:
            hi += 1
        return siblings[lo:hi + 1]

    def operators(seg: list[int]) -> list[str]:
        """The &&, || and ? of an expression. An && is a reference, not a
        logical and, before the = of a declaration (`auto&& x = ...`) and
        where no operand can follow (`static_cast<A&&>(a)`, `(A&&)`)."""
        eq = [n for n, k in enumerate(seg) if text[k] == "="]
        start = eq[0] + 1 if eq else 0
        return [text[k] for k in seg[start:] if text[k] in ("||", "?") or (
            text[k] == "&&" and (k + 1 == len(text) or text[k + 1] not in (">", ")", ",", "]", ";", "...")))]

    def initializer(brace: int) -> bool:
        """Whether the { at `brace` opens a braced initializer (`T{...}`,
        `= {...}`, `f({...})`), not a block: a body follows ) or a lambda's
        trailing return type (`-> task<> {`), or else, do, try, ; { }."""
        prev = text[brace - 1] if brace > 0 else ""
        if prev in (")", "]", ";", "{", "}", "else", "do", "try", ""):
            return False
        if any(text[k] == "->" for k in segment(brace, {";", "{", "}"})):
            return False
        return True

    def in_co_return_initializer(node: int) -> bool:
        """GCC 12.2 also miscompiles a co_await inside a braced initializer
        of a co_return's operand (`co_return T{x, f(co_await op)};` freed a
        std::string it never made in examples/file_server.cpp): true for a
        co_await there, up through parentheses and initializers."""
        crossed = False
        while True:
            opener = up[node]
            if opener >= 0 and text[opener] == "{" and not initializer(opener):
                break
            if opener < 0:
                break
            crossed = crossed or text[opener] == "{"
            node = opener
        if not crossed:
            return False
        statement = segment(node, {";", "{", "}"})
        return bool(statement) and text[statement[0]] == "co_return"

    found: list[tuple[int, str]] = []
    for i, t in enumerate(text):
        if t != "co_await" or (i > 0 and text[i - 1] == "operator"):
            continue
        node = i
        while True:
            opener = up[node]
            keyword = text[opener - 1] if opener > 0 else ""
            if opener >= 0 and text[opener] == "(" and keyword in CONTROL:
                statement = _condition_of(text, kids[opener], node, keyword)
                if statement:
                    found.append((tokens[i][1], f"co_await in the condition of {statement}"))
                    break
                ops = operators(segment(node, {";", ",", ":"}))
            elif opener < 0 or text[opener] == "{":  # a statement, or an element of a braced list
                ops = operators(segment(node, {";", "{", ","}))
            else:  # inside parentheses or brackets: an argument, a subexpression
                ops = operators(segment(node, {";", ","}))
            if ops:
                found.append((tokens[i][1], f"co_await as an operand of {ops[0]}"))
                break
            if opener < 0 or text[opener] in "{" or keyword in CONTROL:
                break
            node = opener
        if not found or found[-1][0] != tokens[i][1]:
            if in_co_return_initializer(i):
                found.append((tokens[i][1], "co_await inside a braced initializer of a co_return"))
    return found


def _condition_of(text: list[str], head: list[int], node: int, keyword: str) -> str:
    """The statement whose condition `node` (a token directly inside the head
    of that if/while/for/switch) is in, or "" when it is in an
    init-statement, a for's increment, a range-for's range, or the
    initializer of a variable the condition declares."""
    semis = [k for k in head if text[k] == ";"]
    if keyword == "for":
        if len(semis) >= 2 and semis[0] < node < semis[1]:
            return "for"
        return ""  # init, increment, or a range-for (`for (x : co_await r)`), which has no condition
    start = semis[-1] if semis else -1
    if node < start:
        return ""  # the init-statement of an if or a switch
    condition = [k for k in head if k > start]
    eq = next((k for k in condition if text[k] == "="), None)
    if eq is not None and eq < node and _declares(text, [k for k in condition if k < eq]):
        return ""  # `if (auto r = co_await op)`: the result is bound to a variable
    return keyword


def _declares(text: list[str], before: list[int]) -> bool:
    """True if the tokens before an = declare a variable: `auto r`,
    `const auto& r`, `std::optional<int> r`, `auto [ec, n]` (not `x`,
    `x.y`, `a[i]`)."""
    if len(before) < 2:
        return False
    last, prev = text[before[-1]], text[before[-2]]
    if last == "[":
        return prev in ("auto", "&", "&&")
    if not last.isidentifier():
        return False
    if prev in ("&", "&&", "*"):
        return len(before) >= 3
    return prev.isidentifier() or prev == ">"


def markdown_blocks(path: Path) -> list[tuple[str, int]]:
    """The C++ fenced code blocks of a Markdown file, each with the line of its first line."""
    blocks = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(```+|~~~+)\s*(\w[\w+]*)?", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), (m.group(2) or "").lower()
        j = i + 1
        while j < len(lines) and not lines[j].lstrip().startswith(fence):
            j += 1
        if lang in ("cpp", "c++", "cxx", "cc"):
            blocks.append(("\n".join(lines[i + 1:j]), i + 2))
        i = j + 1
    return blocks


def check_file(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    if path.suffix == ".md":
        pieces = markdown_blocks(path)
    else:
        pieces = [(path.read_text(encoding="utf-8"), 1)]
    out = []
    for code, first_line in pieces:
        for line, what in findings(tokenize(strip(code), first_line)):
            out.append(f"{rel}:{line}: {what}; {WORKAROUND}")
    return out


def tree() -> list[Path]:
    files = []
    for d in CPP_DIRS:
        files += [p for p in sorted((ROOT / d).rglob("*")) if p.suffix in CPP_SUFFIXES and p.is_file()]
    files.append(ROOT / "README.md")
    files += sorted((ROOT / "docs").rglob("*.md"))
    return [p for p in files if p.relative_to(ROOT).as_posix() not in SKIP]


# The check on itself: each must be flagged (True) or passed (False).
SELF_TEST = [
    ("if (co_await t) f();", True),
    ("if (!co_await t) f();", True),
    ("if ((co_await s.write_all(b)).error()) co_return;", True),
    ("if (!(co_await s.connect(e)).error()) s.close();", True),
    ("if (ok &&\n    co_await t) f();", True),
    ("if (x) {} else if (co_await t) f();", True),
    ("while (co_await t) f();", True),
    ("while (!co_await t) {}", True),
    ("do { f(); } while (!co_await t);", True),
    ("for (; co_await t;) f();", True),
    ("for (int i = 0; co_await t; ++i) f();", True),
    ("switch (co_await t) { default: break; }", True),
    ("if (auto x = 1; co_await t) f();", True),
    ("if (check(co_await t)) f();", True),
    ("if (x = co_await t) f();", True),
    ("co_return ok && co_await t;", True),
    ("co_return co_await t || ok;", True),
    ("co_return co_await t ? 1 : 0;", True),
    ("auto v = ok ? co_await a : co_await b;", True),
    ("f(ok && co_await t);", True),
    ("bool ok = (co_await t).error() || x;", True),
    ("co_return request_end{false, describe(co_await reply(ps))};", True),
    ("co_return T{co_await t};", True),
    ("co_return f(T{1, co_await t});", True),
    ("task<> g() { if (ok) { co_return T{co_await t}; } }", True),
    ("auto r = co_await t;\nco_return T{false, describe(r)};", False),
    ("co_return co_await t;", False),
    ("co_return f(co_await t);", False),
    ("co_return [&]() -> task<> { co_await t; }();", False),
    ("T x{co_await t};", False),
    ("task<> g() { co_await t; co_return; }", False),
    ("auto [ec, n] = co_await s.read_some(b);\nif (ec) co_return;", False),
    ("if (auto [ec] = co_await s.connect(e); ec) co_return;", False),
    ("if (auto r = co_await t) f();", False),
    ("while (bool more = co_await t) f();", False),
    ("if (ec) co_await t;", False),
    ("while (!done) co_await ctx.schedule();", False),
    ("for (auto x : co_await t) f(x);", False),
    ("for (bool b = co_await t; b;) f();", False),
    ("if (!ec) ec = (co_await t).error();", False),
    ("co_await f(a ? b : c, d && e);", False),
    ("auto r = co_await when_all(a(), b());", False),
    ("co_return std::addressof(co_await x);", False),
    ("// if (co_await t) in a comment\nf(\"if (co_await t)\");", False),
    ("auto l = [&]() -> task<> { co_await t; };\nif (ok) co_await l();", False),
    ("task<> g() { if (ok) { co_await t; } }", False),
    ("f(1'000 && x); co_await t;", False),
    ("auto&& r = co_await t;", False),
    ("co_await static_cast<A&&>(a);", False),
    ("awaiter operator co_await() && noexcept;", False),
    ("for (auto&& x : co_await t) f(x);", False),
]


def self_test() -> list[str]:
    failures = []
    for code, flagged in SELF_TEST:
        got = bool(findings(tokenize(strip(code))))
        if got != flagged:
            failures.append(f"self-test: {'missed' if flagged else 'wrongly flagged'}: {code!r}")
    return failures


def main(argv: list[str]) -> int:
    failures = self_test()
    for f in failures:
        print(f"check-await-conditions: {f}")
    if failures:
        print("check-await-conditions: the check itself is broken")
        return 1
    files = [Path(a).resolve() for a in argv] if argv else tree()
    problems = []
    for path in files:
        problems += check_file(path)
    for p in problems:
        print(p)
    print(f"await-conditions: {len(files)} files checked, {len(problems)} co_await in a condition "
          f"(self-test: {len(SELF_TEST)} cases)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
