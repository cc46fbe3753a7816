#!/usr/bin/env bash
# Render man/*.rst into build/man/ (troff) with docutils; install them from there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/man
for source in man/*.rst; do
    .venv/bin/python -m docutils --writer=manpage --halt=warning "$source" "build/man/$(basename "$source" .rst)"
done
ls build/man
