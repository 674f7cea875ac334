#!/usr/bin/env bash
# Regenerates the config documentation from the key tables in the code:
# ukko.example.json and the table in README.md between the config markers.
# tests/integration/test_docs.c fails when they are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/ukko}
"$bin" config-keys --example > ukko.example.json
table=$("$bin" config-keys --markdown)
python3 - "$table" <<'PY'
import re, sys
table = sys.argv[1]
text = open("README.md").read()
begin, end = "<!-- config-table:begin -->", "<!-- config-table:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
open("README.md", "w").write(text[:i] + "\n" + table + "\n" + text[j:])
PY
echo "gen-docs: ukko.example.json and README.md updated"
