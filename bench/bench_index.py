"""Index benchmarks (SQLite): batched-writer throughput, held_for() and the per-domain summary.

  writer      N held messages (one recipient each, made beforehand) submitted to the
              BatchWriter as the daemons do, until committed, median of REPEAT runs;
              anchor: raw SQLAlchemy executemany of plain INSERTs of the same rows,
              10,000 per transaction, into a fresh table.
  queries     an index of ROWS held recipients in DOMAINS domains (loaded with
              executemany), then held_for(domain) for random domains and
              usage_by_domain(); anchor: the same SELECT run by the sqlite3 module.

usage: bench_index.py [--messages 200000] [--rows 1000000] [--domains 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness import Figure, command_line, median_seconds, publish
from sqlalchemy import create_engine

from etrn_ext.config import IndexSettings
from etrn_ext.core.model import HeldRecipient
from etrn_ext.core.names import DomainName
from etrn_ext.index.rows import HELD_COLUMNS, held_values
from etrn_ext.index.schema import held, metadata
from etrn_ext.index.store import IndexStore
from etrn_ext.index.writer import BatchWriter

NOW = 1_795_900_000.0


def rows(count: int, domains: int, seed: int = 7) -> Iterator[HeldRecipient]:
    chooser = random.Random(seed)
    for number in range(count):
        domain = f"site{chooser.randrange(domains):05d}.example"
        arrival = NOW - chooser.randrange(14 * 86400)
        yield HeldRecipient(
            node="relay1",
            queue_id=f"4jc{number:012X}",
            recipient=f"user{number % 97}@{domain}",
            domain=domain,
            sender="sender@example.org",
            size=2000 + chooser.randrange(50000),
            arrival_time=arrival,
            first_seen=arrival,
            last_seen=arrival,
        )


def _writer_rate(path: Path, messages: list[HeldRecipient]) -> float:
    """Messages per second through the BatchWriter, one submit per message as the hooks do."""
    store = IndexStore.open(IndexSettings(url=f"sqlite:///{path}"))
    defaults = IndexSettings()  # as the daemons run it
    writer = BatchWriter(
        store,
        max_rows=defaults.batch_max_rows,
        queue_limit=len(messages) + 10,
        max_delay=defaults.batch_max_delay_seconds,
    ).start()
    started = time.perf_counter()
    for row in messages:
        writer.submit_held((row,))
    writer.flush()
    rate = len(messages) / (time.perf_counter() - started)
    writer.close()
    assert store.count_pending(DomainName("site00000.example")) > 0
    store.close()
    return rate


def _raw_rate(path: Path, messages: list[HeldRecipient]) -> float:
    """Messages per second as plain executemany INSERTs, 10,000 per transaction."""
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    started = time.perf_counter()
    batch: list[dict[str, object]] = []
    with engine.connect() as connection:
        for row in messages:
            batch.append(dict(zip(HELD_COLUMNS, held_values([row])[0], strict=True)))
            if len(batch) == 10_000:
                connection.execute(held.insert(), batch)
                connection.commit()
                batch = []
        if batch:
            connection.execute(held.insert(), batch)
            connection.commit()
    rate = len(messages) / (time.perf_counter() - started)
    engine.dispose()
    return rate


def bench_writer(directory: Path, messages: int, repeat: int) -> list[Figure]:
    made = list(rows(messages, 200))  # made before the clock starts: not the writer's cost
    ours = statistics.median(
        _writer_rate(directory / f"writer{run}.sqlite", made) for run in range(repeat)
    )
    raw = statistics.median(
        _raw_rate(directory / f"raw{run}.sqlite", made) for run in range(repeat)
    )
    return [
        Figure(
            "batched writer, held messages/s",
            ours,
            "msg/s",
            "raw executemany INSERT",
            raw,
            ">= 50,000 msg/s",
            ours >= 50_000,
        )
    ]


def bench_queries(directory: Path, total: int, domains: int) -> list[Figure]:
    path = directory / "big.sqlite"
    store = IndexStore.open(IndexSettings(url=f"sqlite:///{path}"))
    batch = []
    for row in rows(total, domains):
        batch.append(row)
        if len(batch) == 20_000:
            store.record_held(batch)
            batch = []
    store.record_held(batch)
    with store.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
    chooser = random.Random(11)
    names = [DomainName(f"site{chooser.randrange(domains):05d}.example") for _ in range(30)]
    iterator = iter(names)
    held_for, _ = median_seconds(lambda: store.held_for(next(iterator)), len(names))
    summary, _ = median_seconds(store.usage_by_domain, 3)
    store.close()

    raw = sqlite3.connect(path)
    iterator = iter(names)
    sql = (
        "SELECT * FROM etrn_held WHERE domain = ? AND state IN ('held', 'flushing') "
        "ORDER BY arrival_time, queue_id, node, recipient"
    )
    raw_held_for, _ = median_seconds(
        lambda: raw.execute(sql, (next(iterator).ascii,)).fetchall(), len(names)
    )
    raw_summary_sql = (
        "SELECT domain, sum(counts_message), count(*), sum(size * counts_message), "
        "min(arrival_time), max(arrival_time) FROM etrn_held "
        "WHERE state IN ('held', 'flushing') GROUP BY domain"
    )
    raw_summary, _ = median_seconds(lambda: raw.execute(raw_summary_sql).fetchall(), 3)
    raw.close()
    per_domain = total // domains
    return [
        Figure(
            f"held_for(domain), {total:,} rows, ~{per_domain} per domain",
            held_for,
            "s",
            "same SELECT via sqlite3",
            raw_held_for,
            "<= 50 ms",
            held_for <= 0.05,
        ),
        Figure(
            f"usage_by_domain(), {total:,} rows, {domains:,} domains",
            summary,
            "s",
            "same SELECT via sqlite3",
            raw_summary,
            "<= 1 s",
            summary <= 1.0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--domains", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="etrn-bench-") as name:
        directory = Path(name)
        figures = bench_writer(directory, options.messages, options.repeat)
        figures += bench_queries(directory, options.rows, options.domains)
    publish(
        "index",
        command_line(),
        figures,
        "SQLite in WAL mode with synchronous=NORMAL; the writer's rows are made before its "
        f"clock starts, median of {options.repeat} runs into fresh files; medians of 30 "
        "held_for() calls (random domains) and 3 summaries.",
    )


if __name__ == "__main__":
    main()
