"""etrn-policyd request rate and latency against a do-nothing DUNNO server, same run.

The real etrn-policyd (SQLite index, 200 registered domains, quotas set, the batched
writer recording every message) and a minimal asyncio server that splits each block
into attributes and answers DUNNO (what any policy server must do) are each loaded by
the same client process: CONNECTIONS connections, each sending one request and
waiting for the answer, alternating RCPT (a held recipient, quota checked) and
END-OF-MESSAGE (the message recorded) with fresh instances and queue ids, REQUESTS
requests in all. Repeated REPEAT times, servers alternating.

usage: bench_policy.py [--connections 50] [--requests 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Figure, command_line, publish

from etrn_ext.testing.daemons import DaemonProcess

DOMAINS = 200


def request_block(number: int) -> bytes:
    """Message number//2: its RCPT request, then its END-OF-MESSAGE request."""
    message = number // 2
    instance = f"bench.{message:x}"
    if number % 2 == 0:
        attributes = {
            "protocol_state": "RCPT",
            "recipient": f"user{message}@site{message % DOMAINS:03d}.example",
            "instance": instance,
            "queue_id": "",
            "size": "0",
            "client_address": "192.0.2.1",
        }
    else:
        attributes = {
            "protocol_state": "END-OF-MESSAGE",
            "instance": instance,
            "queue_id": f"{message:011X}",
            "size": "4096",
            "sender": "sender@client.example",
            "recipient_count": "1",
        }
    lines = "".join(
        f"{k}={v}\n" for k, v in {"request": "smtpd_access_policy", **attributes}.items()
    )
    return f"{lines}\n".encode()


async def _client(path: str, connections: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def one_connection() -> None:
        reader, writer = await asyncio.open_unix_connection(path)
        for number in counter:
            started = time.perf_counter()
            writer.write(request_block(number))
            await reader.readuntil(b"\n\n")
            latencies.append(time.perf_counter() - started)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
    }


async def _dunno_server(path: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                block = await reader.readuntil(b"\n\n")
                attributes = dict(
                    line.partition("=")[::2] for line in block.decode().split("\n") if line
                )
                del attributes
                writer.write(b"action=DUNNO\n\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_unix_server(answer, path=path)
    Path(path).chmod(0o666)  # Postfix's smtpd (user postfix) must be able to connect
    await server.serve_forever()


def measure(path: Path, connections: int, total: int) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            str(path),
            "--connections",
            str(connections),
            "--requests",
            str(total),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--dunno-server", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.client:
        print(
            json.dumps(asyncio.run(_client(options.client, options.connections, options.requests)))
        )
        return
    if options.dunno_server:
        asyncio.run(_dunno_server(options.dunno_server))
        return

    with tempfile.TemporaryDirectory(prefix="etrn-bench-") as name:
        directory = Path(name)
        config = directory / "etrn-ext.toml"
        ours_path, bare_path = directory / "policyd.sock", directory / "dunno.sock"
        config.write_text(
            f'[index]\nurl = "sqlite:///{directory}/index.sqlite"\n'
            f'[mta]\npostconf = "/bin/true"\n'
            f'[policyd]\nlisten = "{ours_path}"\n'
        )
        etrnctl = Path(sys.executable).with_name("etrnctl")
        for number in range(DOMAINS):
            subprocess.run(
                [
                    etrnctl,
                    "-c",
                    config,
                    "domain",
                    "add",
                    f"site{number:03d}.example",
                    "--quota-messages",
                    "10000000",
                    "--quota-bytes",
                    "1T",
                ],
                check=True,
                capture_output=True,
            )
        daemon = DaemonProcess("etrn-policyd", config, ours_path, directory / "policyd.log")
        daemon.argv = [arg for arg in daemon.argv if arg != "-v"]
        daemon.start()
        bare = subprocess.Popen([sys.executable, __file__, "--dunno-server", str(bare_path)])
        while not bare_path.exists():
            time.sleep(0.05)
        ours_runs, bare_runs = [], []
        try:
            for _ in range(options.repeat):
                bare_runs.append(measure(bare_path, options.connections, options.requests))
                ours_runs.append(measure(ours_path, options.connections, options.requests))
        finally:
            daemon.stop()
            bare.terminate()
            bare.wait()
        recorded = subprocess.run(
            [etrnctl, "-c", config, "summary", "--json"], check=True, capture_output=True, text=True
        ).stdout
        messages = sum(row["messages"] for row in json.loads(recorded))

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    ours, bare_rate = median(ours_runs, "rate"), median(bare_runs, "rate")
    p99 = median(ours_runs, "p99")
    publish(
        "policy",
        command_line(),
        [
            Figure(
                f"requests/s, {options.connections} connections (RCPT + END-OF-MESSAGE)",
                ours,
                "req/s",
                "do-nothing DUNNO server",
                bare_rate,
                ">= 0.8x DUNNO server",
                ours >= 0.8 * bare_rate,
            ),
            Figure(
                "p99 latency",
                p99,
                "s",
                "do-nothing DUNNO server",
                median(bare_runs, "p99"),
                "<= 5 ms",
                p99 <= 0.005,
            ),
            Figure(
                "p50 latency",
                median(ours_runs, "p50"),
                "s",
                "do-nothing DUNNO server",
                median(bare_runs, "p50"),
                "-",
            ),
        ],
        f"Medians of {options.repeat} runs of {options.requests:,} requests each; the daemon "
        f"recorded {messages:,} messages in the index (every END-OF-MESSAGE is a held message).",
    )


if __name__ == "__main__":
    main()
