"""etrnctl on a real 20,000-message Postfix queue: sync vs postqueue -j; summary, report vs qshape.

A private Postfix relay holds MESSAGES messages (4 KB, one recipient each) for DOMAINS
registered intermittent domains, filled with smtp-source (ships with Postfix). Then,
REPEAT times, alternating:

  postqueue -j > /dev/null        the anchor: Postfix listing its own queue
  etrnctl sync (empty index)      a full rebuild of the index from the queue
  etrnctl sync (again)            the incremental case: nothing changed
  qshape -c DIR deferred          Postfix's per-domain view (reads queue files)
  etrnctl summary                 the same view from the index
  etrnctl report --no-sync        the full per-domain report from the index

Every figure is the median wall time of a new process. Needs root (Postfix).
usage: bench_queue.py [--messages 20000] [--domains 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Figure, command_line, count_files, median_seconds, publish, smtp_source

from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.postfix import PrivatePostfix
from etrn_ext.testing.site import SITE_PORT

ETRNCTL = str(Path(sys.executable).with_name("etrnctl"))
QUIET_QUEUE = {  # no background re-deferral churn while measuring (as in the research)
    "minimal_backoff_time": "2h",
    "maximal_backoff_time": "4h",
    "queue_run_delay": "1h",
    "in_flow_delay": "0",
}


def fill(relay: PrivatePostfix, domains: list[str], per_domain: int) -> float:
    started = time.perf_counter()
    for domain in domains:
        subprocess.run(
            smtp_source(
                relay.address,
                relay.port,
                domain,
                messages=per_domain,
                sessions=20,
                limit_seconds=300,
            ),
            check=True,
            capture_output=True,
        )
    spool = relay.queue_directory
    deadline = time.monotonic() + 600
    want = len(domains) * per_domain
    while time.monotonic() < deadline:
        if (
            count_files(spool / "incoming") + count_files(spool / "active") == 0
            and count_files(spool / "deferred") >= want
        ):
            break
        time.sleep(0.5)
    return time.perf_counter() - started


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    domains = [f"site{number:03d}.example" for number in range(options.domains)]
    relay = PrivatePostfix(
        address=free_loopback_address((25,)),
        site_address="127.0.0.2",
        site_port=SITE_PORT,
        domains=domains,
        main_cf=QUIET_QUEUE,
        name="etrn-bench",
    )
    workdir = Path(tempfile.mkdtemp(prefix="etrn-bench-"))
    index = workdir / "index.sqlite"
    config = workdir / "etrn-ext.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{index}"\n'
        f'[mta]\nconfig_directory = "{relay.config_directory}"\n'
    )
    etrnctl = [ETRNCTL, "--config", str(config)]
    try:
        relay.start()
        fill_seconds = fill(relay, domains, options.messages // options.domains)
        queued = len(relay.queue())
        for domain in domains:
            _quiet([*etrnctl, "domain", "add", domain])
        registry = workdir / "registry.sqlite"  # the registry alone, no held mail
        shutil.copy(index, registry)
        _quiet([*etrnctl, "sync"])  # warm the page cache

        def restore_registry() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{index}{suffix}").unlink(missing_ok=True)
            shutil.copy(registry, index)

        postqueue = ["/usr/sbin/postqueue", "-c", str(relay.config_directory), "-j"]
        qshape = ["/usr/sbin/qshape", "-c", str(relay.config_directory), "deferred"]
        report = [*etrnctl, "report", "--no-sync"]
        runs: dict[str, list[float]] = {
            name: [] for name in ("anchor", "full", "again", "qshape", "summary", "report")
        }
        for _ in range(options.repeat):
            runs["anchor"].append(median_seconds(lambda: _quiet(postqueue), 1)[0])
            restore_registry()
            runs["full"].append(median_seconds(lambda: _quiet([*etrnctl, "sync"]), 1)[0])
            runs["again"].append(median_seconds(lambda: _quiet([*etrnctl, "sync"]), 1)[0])
            runs["qshape"].append(median_seconds(lambda: _quiet(qshape), 1)[0])
            runs["summary"].append(median_seconds(lambda: _quiet([*etrnctl, "summary"]), 1)[0])
            runs["report"].append(median_seconds(lambda: _quiet(report), 1)[0])
    finally:
        relay.stop()
        relay.remove()
        shutil.rmtree(workdir, ignore_errors=True)

    anchor, full, again, qshape_seconds, summary, report_seconds = (
        statistics.median(runs[name])
        for name in ("anchor", "full", "again", "qshape", "summary", "report")
    )
    publish(
        "queue",
        command_line(),
        [
            Figure(
                f"etrnctl sync, empty index, {queued:,} messages",
                full,
                "s",
                "postqueue -j",
                anchor,
                "<= 1.5x postqueue -j",
                full <= 1.5 * anchor,
            ),
            Figure("etrnctl sync, nothing changed", again, "s", "postqueue -j", anchor, "-"),
            Figure(
                f"etrnctl summary, {options.domains} domains",
                summary,
                "s",
                "qshape deferred",
                qshape_seconds,
                ">= 10x faster than qshape",
                summary * 10 <= qshape_seconds,
            ),
            Figure(
                f"etrnctl report --no-sync, {options.domains} domains",
                report_seconds,
                "s",
                "qshape deferred",
                qshape_seconds,
                ">= 10x faster than qshape",
                report_seconds * 10 <= qshape_seconds,
            ),
        ],
        f"Queue filled with smtp-source in {fill_seconds:.0f}s; medians of {options.repeat} runs; "
        "every figure includes starting the process.",
    )


if __name__ == "__main__":
    main()
