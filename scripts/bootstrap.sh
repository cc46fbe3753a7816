#!/usr/bin/env bash
# Prepare this machine for etrn-ext's demo and tests, idempotently:
#   - as root on Debian/Ubuntu: install the Debian packages that are missing
#     (Postfix with "No configuration", so nothing is started or changed system-wide);
#   - always: create .venv and install etrn-ext with its test extras into it.
# Re-runs are cheap: packages already present are skipped, and pip runs only when
# pyproject.toml or this script changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*" >&2; }

PYTHON=${PYTHON:-python3}
# chromium (+ its driver) renders the HTML report in tests/integration/test_report_browser.py.
APT_PACKAGES=(postfix postgresql libmilter-dev gcc m4 ca-certificates chromium chromium-driver)

python_ok() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

missing_packages() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || printf '%s\n' "$package"
    done
}

install_debian_packages() {
    command -v apt-get >/dev/null || { say "not a Debian/Ubuntu system: install ${APT_PACKAGES[*]} yourself"; return; }
    local wanted=("${APT_PACKAGES[@]}")
    # The Python that builds pymilter needs its headers and venv support.
    if [ "$("$PYTHON" -c 'import sys; print(sys.prefix)' 2>/dev/null)" = /usr ]; then
        wanted+=(python3-dev python3-venv)
    fi
    python_ok || wanted+=(python3 python3-dev python3-venv)
    mapfile -t missing < <(missing_packages "${wanted[@]}")
    [ "${#missing[@]}" -eq 0 ] && return
    if [ "$(id -u)" -ne 0 ]; then
        say "not root: cannot install ${missing[*]}; tests needing them will be skipped (or fail with CI=true)"
        return
    fi
    say "installing Debian packages: ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python_packages() {
    python_ok || { say "$PYTHON is older than 3.11; set PYTHON=/path/to/python3.11+"; exit 1; }
    local stamp=.venv/.bootstrap-stamp
    local want
    want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
    if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    [ -x .venv/bin/python ] || { say "creating .venv with $PYTHON"; "$PYTHON" -m venv .venv; }
    say "installing etrn-ext and its test dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[postgresql,test]' --config-settings editable_mode=compat
    echo "$want" >"$stamp"
}

fetch_sendmail() {
    [ -x .cache/sendmail/root/usr/libexec/sendmail/sendmail ] && return
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        say "not root on Debian/Ubuntu: no private Sendmail; its tests will be skipped (or fail with CI=true)"
        return
    fi
    say "downloading Debian's Sendmail packages into .cache/sendmail (unpacked, never installed)"
    .venv/bin/python -m etrn_ext.testing.sendmail install .cache/sendmail
}

install_debian_packages
install_python_packages
fetch_sendmail
# Byte-compile the tree: environments with PYTHONDONTWRITEBYTECODE=1 would otherwise
# compile every module on every start of etrnctl and the daemons.
.venv/bin/python -m compileall -q etrn_ext
