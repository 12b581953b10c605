#!/usr/bin/env bash
# Checks that code shown in the docs is the code that is compiled: a fenced
# block right after a line `<!-- snippet: PATH -->` must equal the file PATH
# (relative to the repository root) exactly; after `<!-- snippet: PATH#NAME -->`
# it must equal the lines between `// snippet-begin: NAME` and
# `// snippet-end: NAME` in PATH. Run by ctest (docs.snippets).
set -euo pipefail
cd "$(dirname "$0")/../.."

status=0
checked=0
while IFS= read -r doc; do
  while IFS= read -r line_and_path; do
    line=${line_and_path%%:*}
    path=${line_and_path#*:}
    # The block starts two lines below the marker (after the ``` fence).
    block=$(awk -v start=$((line + 2)) 'NR >= start { if ($0 ~ /^```/) exit; print }' "$doc")
    region=
    if [[ $path == *#* ]]; then
      region=${path#*#}
      path=${path%%#*}
    fi
    if [[ ! -f $path ]]; then
      echo "$doc:$line: snippet names a missing file: $path"
      status=1
      continue
    fi
    if [[ -n $region ]]; then
      expected=$(awk -v name="$region" '
        $0 ~ "// snippet-end: " name "$" { inside = 0 }
        inside { print }
        $0 ~ "// snippet-begin: " name "$" { inside = 1; found = 1 }
        END { if (!found) exit 1 }' "$path") || {
        echo "$doc:$line: no region '$region' in $path"
        status=1
        continue
      }
    else
      expected=$(cat "$path")
    fi
    if [[ "$block" != "$expected" ]]; then
      echo "$doc:$line: snippet differs from $path:"
      diff <(printf '%s\n' "$block") <(printf '%s\n' "$expected") | head -20 || true
      status=1
    fi
    checked=$((checked + 1))
  done < <(grep -n -o '<!-- snippet: [^ ]* -->' "$doc" | sed -E 's/^([0-9]+):<!-- snippet: ([^ ]*) -->$/\1:\2/')
done < <(find README.md docs -name '*.md' 2>/dev/null)

echo "snippets: $checked checked"
exit $status
