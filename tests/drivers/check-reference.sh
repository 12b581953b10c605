#!/usr/bin/env bash
# Builds the API reference (docs/Doxyfile) into build/reference and fails if
# Doxygen reported any warning (undocumented public declarations included).
# Needs doxygen on PATH; installs nothing. Run from anywhere in the repository.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if ! command -v doxygen >/dev/null 2>&1; then
    echo "reference: doxygen not found on PATH" >&2
    exit 1
fi

out=build/reference
log="$out/warnings.log" # WARN_LOGFILE in docs/Doxyfile
rm -rf "$out"
mkdir -p "$out"
doxygen docs/Doxyfile

if [[ ! -f "$log" ]]; then
    echo "reference: $log was not written; is WARN_LOGFILE still set in docs/Doxyfile?" >&2
    exit 1
fi
if [[ -s "$log" ]]; then
    echo "reference: doxygen warnings:" >&2
    cat "$log" >&2
    exit 1
fi

pages="$(find "$out/html" -type f -name '*.html' | wc -l | tr -d ' ')"
echo "reference: $pages pages, no warnings"
