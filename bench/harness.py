"""Shared by the benchmarks: timing, and publishing figures next to their anchors.

Each benchmark measures our figure and an anchor (the bare tool or a raw baseline)
in the same run, prints them side by side, writes ``bench/results/NAME.json`` and
replaces its own section of ``docs/benchmarks.md`` (between ``<!-- bench:NAME -->``
markers) together with the exact command that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"


@dataclass
class Figure:
    """One measured figure, its anchor from the same run, and the target it is held to."""

    name: str
    value: float
    unit: str
    anchor: str = ""
    anchor_value: float | None = None
    target: str = ""
    ok: bool | None = None

    def ratio(self) -> str:
        if self.anchor_value in (None, 0):
            return "-"
        return f"{self.value / self.anchor_value:.2f}x"


def count_files(directory: Path) -> int:
    """Files under ``directory``: how a bench sees a Postfix queue directory settle."""
    return sum(len(files) for _root, _dirs, files in os.walk(directory))


def smtp_source(
    address: str, port: int, domain: str, *, messages: int, sessions: int, limit_seconds: int
) -> list[str]:
    """argv of Postfix's smtp-source sending 4 KB messages to user@``domain``, time-boxed."""
    return [
        "timeout",
        str(limit_seconds),
        "/usr/sbin/smtp-source",
        "-N",
        "-f",
        "sender@client.example",
        "-M",
        "client.example",
        "-t",
        f"user@{domain}",
        "-l",
        "4096",
        "-m",
        str(messages),
        "-s",
        str(sessions),
        f"{address}:{port}",
    ]


def median_seconds(action: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeat`` runs of ``action`` (and all the runs)."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), runs


def machine() -> str:
    cpus = os.cpu_count()
    python = platform.python_version()
    try:
        postfix = (
            subprocess.run(
                ["postconf", "-d", "-h", "mail_version"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or "n/a"
        )
    except OSError:
        postfix = "n/a"
    today = time.strftime("%Y-%m-%d")
    return f"{platform.machine()}, {cpus} CPUs, Python {python}, Postfix {postfix}, {today}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s" and value < 1:
        return f"{value * 1000:.1f} ms"
    if value >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def publish(bench: str, command: str, figures: list[Figure], notes: str = "") -> None:
    """Print the figures, save them, and rewrite this benchmark's section of the docs."""
    header = "| figure | value | anchor | anchor value | ratio | target | met |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for f in figures:
        met = "-" if f.ok is None else ("yes" if f.ok else "**no**")
        lines.append(
            f"| {f.name} | {_fmt(f.value, f.unit)} | {f.anchor or '-'} | "
            f"{_fmt(f.anchor_value, f.unit)} | {f.ratio()} | {f.target or '-'} | {met} |"
        )
    table = "\n".join(lines)
    print(table, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{bench}.json").write_text(
        json.dumps(
            {
                "bench": bench,
                "command": command,
                "machine": machine(),
                "figures": [asdict(f) for f in figures],
            },
            indent=2,
        )
        + "\n"
    )
    section = (
        f"<!-- bench:{bench} -->\nCommand: `{command}`  \nMachine: {machine()}\n\n"
        f"{table}\n" + (f"\n{notes.strip()}\n" if notes else "") + f"<!-- /bench:{bench} -->"
    )
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{bench} -->.*?<!-- /bench:{bench} -->", re.DOTALL)
    text = (
        pattern.sub(lambda _m: section, text)
        if pattern.search(text)
        else text.rstrip() + f"\n\n{section}\n"
    )
    DOCS.write_text(text)


def command_line() -> str:
    return " ".join([".venv/bin/python", *[os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]])
