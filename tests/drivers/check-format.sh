#!/usr/bin/env bash
# Fails if any C++ file differs from what clang-format 19 (.clang-format) makes
# of it. Fix with: clang-format-19 -i $(git ls-files '*.hpp' '*.cpp')
set -euo pipefail
cd "$(dirname "$0")/../.."
format=$(command -v clang-format-19 || true)
if [[ -z $format ]]; then
  echo "check-format: clang-format-19 not found (scripts/setup.sh installs it)" >&2
  exit 1
fi
bad=0
files=0
while IFS= read -r f; do
  files=$((files + 1))
  if ! "$format" --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=$((bad + 1))
  fi
done < <(git ls-files '*.hpp' '*.cpp')
echo "format: $files files checked, $bad not formatted"
((bad == 0))
