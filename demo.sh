#!/usr/bin/env bash
# The demo: a private Postfix relay and a fake intermittent site on loopback, held mail,
# an ETRN from the site, and etrnctl showing it all. Needs root (Postfix does).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/python -m etrn_ext.testing.demo "$@"
