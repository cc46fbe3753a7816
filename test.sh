#!/usr/bin/env bash
# The whole test suite: set up what is missing, then lint, type-check and run pytest
# (unit, protocol, integration against a private Postfix and PostgreSQL, and QA checks).
# Extra arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
