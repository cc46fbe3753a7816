"""Report benchmark (SQLite): ``etrnctl report --no-sync`` on a big index, in-process.

  report      an index of ROWS held recipients in DOMAINS registered domains (rows as
              bench_index.py makes them: random arrivals over two weeks), a few ETRN
              and flush events per domain; then ``etrnctl report --no-sync`` through
              click's CliRunner (the text format, as cron mails it), median of REPEAT
              runs. The queue lifetime comes from a postconf stand-in, so no Postfix is
              needed. Anchors: the report's one aggregate SELECT run by the sqlite3
              module; the same figures as one filtered count per age cutoff (what
              the report did before) and as the per-message two-level GROUP BY
              that schema 1 needed.
  memory      peak Python allocations of one more report run (tracemalloc): the report
              reads per-domain aggregates, never the rows, so this stays flat as ROWS grow.

usage: bench_report.py [--rows 1000000] [--domains 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench_index import NOW, rows
from click.testing import CliRunner
from harness import Figure, command_line, median_seconds, publish

from etrn_ext.cli.main import cli
from etrn_ext.config import IndexSettings
from etrn_ext.core.model import Event, EventKind
from etrn_ext.core.registry import DomainChanges, new_domain
from etrn_ext.core.report import age_cutoffs, expiry_cutoff
from etrn_ext.index.store import IndexStore

BATCH = 20_000


def build_index(directory: Path, total: int, domains: int) -> Path:
    """The index: registry, held rows in batches, events; then ANALYZE like a live one."""
    path = directory / "report.sqlite"
    store = IndexStore.open(IndexSettings(url=f"sqlite:///{path}"))
    for number in range(domains):
        store.add_domain(
            new_domain(
                f"site{number:05d}.example",
                DomainChanges(quota_bytes="500M", contacts=("ops@isp.example",)),
                NOW - 30 * 86400,
            )
        )
    batch = []
    for row in rows(total, domains):
        batch.append(row)
        if len(batch) == BATCH:
            store.record_held(batch)
            batch = []
    store.record_held(batch)
    chooser = random.Random(5)
    events = []
    for number in range(domains):
        domain = f"site{number:05d}.example"
        for _ in range(4):
            at = NOW - chooser.randrange(14 * 86400)
            events.append(Event(at, EventKind.ETRN, "relay1", "192.0.2.7", "allowed", domain))
        flushed = {"queue_ids": [f"4jc{number:012X}"], "messages": 1}
        events.append(
            Event(NOW - 3600, EventKind.FLUSH, "relay1", "root", "requested", domain, flushed)
        )
    for start in range(0, len(events), BATCH):
        store.write_batch([], [event.fields() for event in events[start : start + BATCH]])
    with store.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
    store.close()
    return path


def config_for(directory: Path, index: Path) -> Path:
    postconf = directory / "postconf"
    postconf.write_text('#!/bin/sh\necho "maximal_queue_lifetime = 5d"\n')
    postconf.chmod(0o755)
    config = directory / "etrn-ext.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{index}"\n'
        f'[mta]\nnode_name = "relay1"\npostconf = "{postconf}"\n'
    )
    return config


def run_report(config: Path) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), "report", "--no-sync"])
    assert result.exit_code == 0, result.output
    return result.stdout


def anchors(index: Path, repeat: int) -> tuple[float, float, float]:
    """The report's aggregate as raw SQL, the filtered count per cutoff it replaced, and
    schema 1's per-message GROUP BY.

    The SQL is built from constants and our own cutoff numbers only.
    """
    raw = sqlite3.connect(index)
    pending = "state IN ('held', 'flushing')"
    usage = (
        "sum(counts_message)",
        "count(*)",
        "sum(size * counts_message)",
        "min(arrival_time)",
        "max(arrival_time)",
    )
    cutoffs = age_cutoffs(NOW)
    # the expiring mail: the stand-in's 5d lifetime, the default 1d warning window
    early = expiry_cutoff(NOW, 5 * 86400.0, 86400.0)
    bounds = sorted({*cutoffs, early})
    slices = " ".join(
        f"WHEN arrival_time <= {bound} THEN '{chr(97 + number)}'"
        for number, bound in enumerate(bounds)
    )
    letters = f"group_concat(CASE {slices} ELSE '{chr(97 + len(bounds))}' END, '')"
    expiring_extra = [
        f"{column} FILTER (WHERE arrival_time <= {early})"
        for column in (usage[0], usage[2], usage[4])
    ]
    ours = (
        f"SELECT domain, {', '.join([*usage, letters, *expiring_extra])} FROM etrn_held "
        f"WHERE {pending} GROUP BY domain"
    )
    cuts = [f"count(*) FILTER (WHERE arrival_time <= {cutoff})" for cutoff in cutoffs]
    expiring = [f"{column} FILTER (WHERE arrival_time <= {early})" for column in usage]
    filtered = (
        f"SELECT domain, {', '.join([*usage, *cuts, *expiring])} FROM etrn_held "
        f"WHERE {pending} GROUP BY domain"
    )
    per_message = (
        "SELECT domain, count(*), sum(r), sum(s), min(a) FROM (SELECT domain, count(*) r, "
        f"max(size) s, min(arrival_time) a FROM etrn_held WHERE {pending} "
        "GROUP BY domain, node, queue_id) GROUP BY domain"
    )
    seconds = [
        median_seconds(lambda sql=sql: raw.execute(sql).fetchall(), repeat)[0]
        for sql in (ours, filtered, per_message)
    ]
    raw.close()
    return seconds[0], seconds[1], seconds[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--domains", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="etrn-bench-") as name:
        directory = Path(name)
        started = time.perf_counter()
        index = build_index(directory, options.rows, options.domains)
        load_seconds = time.perf_counter() - started
        config = config_for(directory, index)
        run_report(config)  # warm the page cache and the imports, as a cron job's second run
        ours, _ = median_seconds(lambda: run_report(config), options.repeat)
        tracemalloc.start()
        run_report(config)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        lettered, filtered, two_level = anchors(index, options.repeat)
    scale = f"{options.rows:,} rows, {options.domains:,} domains"
    publish(
        "report",
        command_line(),
        [
            Figure(
                f"etrnctl report --no-sync, {scale}",
                ours,
                "s",
                "its aggregate SELECT via sqlite3",
                lettered,
                "<= 1 s",
                ours <= 1.0,
            ),
            Figure(
                f"peak Python memory of one report, {scale}",
                peak / 2**20,
                "MB",
                target="<= 64 MB",
                ok=peak / 2**20 <= 64,
            ),
            Figure(
                f"one filtered count per age cutoff, {scale}",
                filtered,
                "s",
                "a letter per recipient (ours)",
                lettered,
            ),
            Figure(
                f"schema 1's per-message GROUP BY, {scale}",
                two_level,
                "s",
                "a letter per recipient (ours)",
                lettered,
            ),
        ],
        f"In-process (click's CliRunner), text format, medians of {options.repeat} runs after "
        f"a warm-up run; loading the index took {load_seconds:.0f}s. SQLite in WAL mode.",
    )


if __name__ == "__main__":
    main()
