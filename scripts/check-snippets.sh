#!/usr/bin/env bash
# Checks that code shown in the docs is the code that is compiled: a fenced
# block right after a line `<!-- snippet: PATH -->` must equal the file PATH
# (relative to the repository root) exactly. Run by ctest (docs.snippets).
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
checked=0
while IFS= read -r doc; do
  while IFS= read -r line_and_path; do
    line=${line_and_path%%:*}
    path=${line_and_path#*:}
    # The block starts two lines below the marker (after the ``` fence).
    block=$(awk -v start=$((line + 2)) 'NR >= start { if ($0 ~ /^```/) exit; print }' "$doc")
    if [[ ! -f $path ]]; then
      echo "$doc:$line: snippet names a missing file: $path"
      status=1
    elif [[ "$block" != "$(cat "$path")" ]]; then
      echo "$doc:$line: snippet differs from $path:"
      diff <(printf '%s\n' "$block") "$path" | head -20 || true
      status=1
    fi
    checked=$((checked + 1))
  done < <(grep -n -o '<!-- snippet: [^ ]* -->' "$doc" | sed -E 's/^([0-9]+):<!-- snippet: ([^ ]*) -->$/\1:\2/')
done < <(find README.md docs -name '*.md' 2>/dev/null)

echo "snippets: $checked checked"
exit $status
