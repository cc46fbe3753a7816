"""The site's link-up hooks and units: each runs etrnctl trigger --all and logs to syslog."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from etrn_ext.cli.main import TRIGGER_EXIT_CODES

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
PPP = CONTRIB / "site" / "ppp" / "ip-up.d" / "etrn-trigger"
NETWORK_MANAGER = CONTRIB / "site" / "NetworkManager" / "dispatcher.d" / "90-etrn-trigger"
NETWORKD = CONTRIB / "site" / "networkd-dispatcher" / "routable.d" / "50-etrn-trigger"
HOOKS = [PPP, NETWORK_MANAGER, NETWORKD]

STUB_ETRNCTL = """#!/bin/sh
echo "$@" > "{tmp}/argv"
echo "site.example: relay=mx1.isp.example[192.0.2.1]:25, tls=yes, attempts=1, status=flushed (250 OK)"
exit 75
"""
STUB_LOGGER = """#!/bin/sh
{{ echo "logger $*"; cat; }} > "{tmp}/syslog.part" && mv "{tmp}/syslog.part" "{tmp}/syslog"
"""


def run_hook(tmp_path: Path, hook: Path, args: list[str], env: dict[str, str]) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name, text in (("etrnctl", STUB_ETRNCTL), ("logger", STUB_LOGGER)):
        (stubs / name).write_text(text.format(tmp=tmp_path))
        (stubs / name).chmod(0o755)
    environment = {"PATH": f"{stubs}:/usr/bin:/bin", "ETRNCTL": str(stubs / "etrnctl"), **env}
    subprocess.run([str(hook), *args], env=environment, check=True, timeout=10)


def wait_for_file(path: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("hook", HOOKS, ids=lambda p: p.parent.parent.name)
def test_hooks_are_executable_shell(hook: Path) -> None:
    assert os.access(hook, os.X_OK)
    subprocess.run(["sh", "-n", str(hook)], check=True, timeout=10)


@pytest.mark.parametrize(
    ("hook", "args", "env", "why"),
    [
        pytest.param(
            PPP,
            ["ppp0", "/dev/ttyS0", "115200", "10.1.1.2", "10.1.1.1", ""],
            {"PPP_IFACE": "ppp0"},
            "ppp ppp0 up",
            id="ppp",
        ),
        pytest.param(NETWORK_MANAGER, ["wwan0", "up"], {}, "wwan0 up", id="networkmanager"),
        pytest.param(
            NETWORKD, [], {"IFACE": "eth1", "STATE": "routable"}, "eth1 routable", id="networkd"
        ),
    ],
)
def test_link_up_runs_trigger_all_and_logs_to_syslog(
    tmp_path: Path, hook: Path, args: list[str], env: dict[str, str], why: str
) -> None:
    run_hook(tmp_path, hook, args, env)
    syslog = wait_for_file(tmp_path / "syslog", timeout=10)
    assert syslog is not None
    assert (tmp_path / "argv").read_text() == "trigger --all --wait-local\n"
    assert syslog.splitlines() == [
        "logger -t etrnctl -p mail.info",
        "site.example: relay=mx1.isp.example[192.0.2.1]:25, tls=yes, attempts=1, status=flushed (250 OK)",
        f"etrnctl trigger --all ({why}) exited with status 75",
    ]


@pytest.mark.parametrize(
    ("hook", "args", "env"),
    [
        pytest.param(NETWORK_MANAGER, ["wwan0", "down"], {}, id="networkmanager-down"),
        pytest.param(NETWORK_MANAGER, ["lo", "up"], {}, id="networkmanager-loopback"),
        pytest.param(NETWORKD, [], {"IFACE": "lo", "STATE": "routable"}, id="networkd-loopback"),
    ],
)
def test_other_events_trigger_nothing(
    tmp_path: Path, hook: Path, args: list[str], env: dict[str, str]
) -> None:
    run_hook(tmp_path, hook, args, env)
    assert wait_for_file(tmp_path / "argv", timeout=0.3) is None


def test_the_periodic_unit_runs_the_same_command_and_tolerates_a_link_down() -> None:
    service = (CONTRIB / "systemd" / "etrn-trigger.service").read_text()
    assert "trigger --all --wait-local" in service
    assert "Type=oneshot" in service
    tolerated = {TRIGGER_EXIT_CODES["partial"], TRIGGER_EXIT_CODES["unreachable"]}
    assert f"SuccessExitStatus={' '.join(map(str, sorted(tolerated)))}" in service
    assert "SyslogFacility=mail" in service
    timer = (CONTRIB / "systemd" / "etrn-trigger.timer").read_text()
    assert "OnCalendar=" in timer
