#!/usr/bin/env python3
"""Rewrites the code blocks the docs pull from the sources.

A fenced block right after `<!-- snippet: PATH -->` becomes the file PATH;
after `<!-- snippet: PATH#NAME -->`, the lines between `// snippet-begin: NAME`
and `// snippet-end: NAME` in PATH. tests/drivers/check-snippets.sh checks the
same rule in CI; this fixes what it reports. Run from anywhere:

    python3 scripts/sync-snippets.py
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
marker = re.compile(r"<!-- snippet: (\S+) -->")


def region(path, name):
    lines = (root / path).read_text().splitlines()
    inside, out, found = False, [], False
    for line in lines:
        if line.rstrip() == f"// snippet-end: {name}" or line.strip() == f"// snippet-end: {name}":
            inside = False
        if inside:
            out.append(line)
        if line.strip() == f"// snippet-begin: {name}":
            inside, found = True, True
    if not found:
        sys.exit(f"no region '{name}' in {path}")
    return out


changed = 0
docs = [root / "README.md"] + sorted((root / "docs").rglob("*.md"))
for doc in docs:
    lines = doc.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        out.append(lines[i])
        m = marker.search(lines[i])
        if m and i + 1 < len(lines) and lines[i + 1].startswith("```"):
            target = m.group(1)
            path, _, name = target.partition("#")
            body = region(path, name) if name else (root / path).read_text().splitlines()
            out.append(lines[i + 1])
            j = i + 2
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.extend(body)
            i = j
            continue
        i += 1
    text = "\n".join(out) + "\n"
    if text != doc.read_text():
        doc.write_text(text)
        changed += 1
        print(f"updated {doc.relative_to(root)}")
print(f"snippets: {changed} file(s) updated")
