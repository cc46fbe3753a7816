"""etrnctl cold start: ``--help``, and ``domain list`` on a small SQLite index.

Each command is started REPEAT times as a new process (wall time, median). Anchors
from the same run: the bare interpreter (``python -c pass``) for --help, and the
interpreter importing SQLAlchemy (``python -c 'import sqlalchemy'``) for domain list.

usage: bench_cli.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import Figure, command_line, median_seconds, publish

PYTHON = sys.executable
ETRNCTL = str(Path(PYTHON).with_name("etrnctl"))


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=20)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="etrn-bench-") as name:
        config = Path(name) / "etrn-ext.toml"
        config.write_text(f'[index]\nurl = "sqlite:///{name}/index.sqlite"\n')
        for number in range(5):
            _run(
                [
                    ETRNCTL,
                    "-c",
                    str(config),
                    "domain",
                    "add",
                    f"site{number}.example",
                    "--allow",
                    "192.0.2.0/24",
                ]
            )
        _run([ETRNCTL, "--help"])  # warm the page cache once, as for every other command
        bare, _ = median_seconds(lambda: _run([PYTHON, "-c", "pass"]), repeat)
        helped, _ = median_seconds(lambda: _run([ETRNCTL, "--help"]), repeat)
        with_sqlalchemy, _ = median_seconds(
            lambda: _run([PYTHON, "-c", "import sqlalchemy"]), repeat
        )
        listed, _ = median_seconds(
            lambda: _run([ETRNCTL, "-c", str(config), "domain", "list"]), repeat
        )
    publish(
        "cli",
        command_line(),
        [
            Figure(
                "etrnctl --help", helped, "s", "python -c pass", bare, "<= 150 ms", helped <= 0.150
            ),
            Figure(
                "etrnctl domain list (5 domains)",
                listed,
                "s",
                "python -c 'import sqlalchemy'",
                with_sqlalchemy,
                "<= 300 ms",
                listed <= 0.300,
            ),
        ],
        f"Wall time of a new process, median of {repeat} runs each.",
    )


if __name__ == "__main__":
    main()
