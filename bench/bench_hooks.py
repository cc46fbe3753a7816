"""The cost of etrn-policyd to a real Postfix: acceptance rate, and ETRN to delivered.

acceptance  smtp-source sends MESSAGES 4 KB messages (SESSIONS parallel sessions) to a
            private relay, bare and then with the recommended configuration
            (``etrnctl postfix-config``'s policyd lines, the daemon running), for a mix
            of 20 % and of 100 % mail for intermittent domains (the rest is relayed
            and discarded). A third configuration points the same lines at a
            do-nothing DUNNO server: what the policy protocol itself costs Postfix.
            A fourth has etrn-milter instead (postfix-config --milter lines), a fifth
            the same milter lines with a do-nothing pymilter that has etrn-milter's
            callbacks: what a Python milter itself costs Postfix; a sixth that pymilter
            adding one trace header to every message: what the header itself costs.
            Configurations alternate within each repetition.
etrn        100 held messages for one domain, delivered to a fake site: the time from
            ``postqueue -s`` until the site has them all, against the time from an SMTP
            ``ETRN`` (decided by etrn-policyd) until the site has them all.

usage: bench_hooks.py [--messages 5000] [--sessions 10] [--repeat 3]
Needs root (Postfix).
"""

from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_queue import QUIET_QUEUE
from harness import Figure, command_line, count_files, publish, smtp_source

from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.names import parse_domain
from etrn_ext.core.postfix_setup import milter_main_cf, policyd_main_cf, recipient_map_lines
from etrn_ext.testing.daemons import DaemonProcess
from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.postfix import PrivatePostfix
from etrn_ext.testing.site import FakeSite

HELD = [f"site{number:02d}.example" for number in range(20)]
PLAIN = "plain.example"


def _source(
    relay: PrivatePostfix, domain: str, messages: int, sessions: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        smtp_source(
            relay.address,
            relay.port,
            domain,
            messages=messages,
            sessions=sessions,
            limit_seconds=600,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def accept(relay: PrivatePostfix, messages: int, sessions: int, held_share: float) -> float:
    """Messages per second accepted for a mix with ``held_share`` intermittent mail."""
    relay.command("postsuper", "-d", "ALL", check=False)
    held = round(messages * held_share)
    held_sessions = max(1, round(sessions * held_share))
    started = time.perf_counter()
    senders = [_source(relay, HELD[0], held, held_sessions)] if held else []
    if messages - held:
        senders.append(_source(relay, PLAIN, messages - held, max(1, sessions - held_sessions)))
    for sender in senders:
        sender.wait()
    return messages / (time.perf_counter() - started)


def serve_null_milter(socket_path: str, *, header: bool = False) -> None:
    """A pymilter with etrn-milter's callbacks (MAIL and RCPT without replies, then
    END-OF-MESSAGE) that does nothing in them, or (``header``) only adds a trace header
    like etrn-milter's to every message."""
    import Milter

    class NullMilter(Milter.Base):  # type: ignore[misc]
        @Milter.noreply  # type: ignore[untyped-decorator]
        def envfrom(self, mailfrom: str, *params: str) -> int:
            return Milter.CONTINUE  # type: ignore[no-any-return]

        @Milter.noreply  # type: ignore[untyped-decorator]
        def envrcpt(self, to: str, *params: str) -> int:
            return Milter.CONTINUE  # type: ignore[no-any-return]

        def eom(self) -> int:
            if header:
                self.addheader("X-ETRN-Held", "site.example; relay=bench; queued=now")
            return Milter.CONTINUE  # type: ignore[no-any-return]

    os.umask(0o000)  # Postfix's smtpd (user postfix) must be able to connect
    Milter.factory = NullMilter
    if header:
        Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("null-milter", f"unix:{socket_path}", timeout=600)


def configure(relay: PrivatePostfix, hook: str | None, bare: dict[str, str]) -> None:
    """Bare, or one hook as postfix-config writes it: ``policy:SERVICE`` or ``milter:SERVICE``."""
    relay.extra_main_cf = dict(bare)
    kind, _, service = (hook or "").partition(":")
    if kind == "policy":
        relay.extra_main_cf.update(
            policyd_main_cf(relay.main_cf(), str(relay.config_directory), service)
        )
    elif kind == "milter":
        relay.extra_main_cf.update(milter_main_cf(relay.main_cf(), service))
    relay.reload()
    time.sleep(1.5)  # let the old smtpd processes finish their reload


def held_count(relay: PrivatePostfix) -> int:
    return count_files(relay.queue_directory / "deferred")


def fill(relay: PrivatePostfix, count: int) -> None:
    relay.command("postsuper", "-d", "ALL", check=False)
    _source(relay, HELD[0], count, 5).wait()
    deadline = time.monotonic() + 60
    while held_count(relay) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def until_delivered(site: FakeSite, count: int, trigger: object) -> float:
    site.messages.clear()
    started = time.perf_counter()
    trigger()  # type: ignore[operator]
    received = site.wait_for_recipients(count, timeout=120)
    if len(received) < count:
        raise RuntimeError(f"only {len(received)} of {count} delivered")
    return time.perf_counter() - started


def measure_etrn(
    relay: PrivatePostfix, site: FakeSite, repeat: int
) -> tuple[list[float], list[float]]:
    """Seconds until 100 held messages reach the site: after postqueue -s, and after ETRN."""
    flush_runs, etrn_runs = [], []

    def send_etrn() -> None:
        with smtplib.SMTP(relay.address, 25, source_address=(site.address, 0)) as client:
            client.ehlo("mx.site.example")
            code, _reply = client.docmd("ETRN", HELD[0])
        if code != 250:
            raise RuntimeError(f"ETRN answered {code}")

    for _ in range(repeat):
        fill(relay, 100)
        flush_runs.append(
            until_delivered(site, 100, lambda: relay.command("postqueue", "-s", HELD[0]))
        )
        fill(relay, 100)
        etrn_runs.append(until_delivered(site, 100, send_etrn))
    return flush_runs, etrn_runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--null-milter", help=argparse.SUPPRESS)
    parser.add_argument("--header-milter", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.null_milter or options.header_milter:
        serve_null_milter(
            options.null_milter or options.header_milter, header=bool(options.header_milter)
        )
        return
    site = FakeSite(free_loopback_address((2526,))).start()
    relay = PrivatePostfix(
        address=free_loopback_address((25,)),
        site_address=site.address,
        site_port=site.port,
        domains=[*HELD, PLAIN],
        main_cf=QUIET_QUEUE,
        name="etrn-bench",
        transport=[line for d in HELD for line in (f"{d} {{nexthop}}", f".{d} {{nexthop}}")]
        + [f"{PLAIN} discard:"],
        maps={
            "etrn-recipients": recipient_map_lines(
                [IntermittentDomain(parse_domain(d)) for d in HELD]
            )
        },
    )
    workdir = Path(tempfile.mkdtemp(prefix="etrn-bench-"))
    config = workdir / "etrn-ext.toml"
    etrnctl = Path(sys.executable).with_name("etrnctl")
    configurations = {
        "bare": None,
        "hooks": "policy:unix:private/etrn-policy",
        "dunno": "policy:unix:private/dunno-policy",
        "milter": "milter:unix:private/etrn-milter",
        "nullmilter": "milter:unix:private/null-milter",
        "headermilter": "milter:unix:private/header-milter",
    }
    rates: dict[str, list[float]] = {
        f"{n}{share}": [] for n in configurations for share in (20, 100)
    }
    try:
        relay.start()
        bare = dict(relay.extra_main_cf)
        socket_path = relay.queue_directory / "private" / "etrn-policy"
        config.write_text(
            f'[index]\nurl = "sqlite:///{workdir}/index.sqlite"\n'
            f'[mta]\nconfig_directory = "{relay.config_directory}"\n'
            f'[policyd]\nlisten = "{socket_path}"\n'
            f'[milter]\nlisten = "unix:{relay.queue_directory}/private/etrn-milter"\n'
        )
        for domain in HELD:
            subprocess.run(
                [etrnctl, "-c", config, "domain", "add", domain, "--allow", f"{site.address}/32"],
                check=True,
                capture_output=True,
            )
        daemon = DaemonProcess("etrn-policyd", config, socket_path, workdir / "policyd.log")
        daemon.argv = [arg for arg in daemon.argv if arg != "-v"]
        daemon.start()
        milter = DaemonProcess(
            "etrn-milter",
            config,
            relay.queue_directory / "private" / "etrn-milter",
            workdir / "m.log",
        )
        milter.argv = [arg for arg in milter.argv if arg != "-v"]
        milter.start()
        dunno_path = relay.queue_directory / "private" / "dunno-policy"
        dunno = subprocess.Popen(
            [
                sys.executable,
                Path(__file__).with_name("bench_policy.py"),
                "--dunno-server",
                str(dunno_path),
            ]
        )
        null_milters = [
            subprocess.Popen(
                [sys.executable, __file__, option, str(relay.queue_directory / "private" / name)]
            )
            for option, name in (
                ("--null-milter", "null-milter"),
                ("--header-milter", "header-milter"),
            )
        ]
        for _ in range(options.repeat):
            for name, service in configurations.items():
                configure(relay, service, bare)
                accept(relay, 200, options.sessions, 0.2)  # warm up
                for share in (20, 100):
                    rate = accept(relay, options.messages, options.sessions, share / 100)
                    rates[f"{name}{share}"].append(rate)
        dunno.terminate()
        for null_milter in null_milters:
            null_milter.terminate()
        configure(relay, configurations["hooks"], bare)
        flush_runs, etrn_runs = measure_etrn(relay, site, options.repeat)
        daemon.stop()
        milter.stop()
    finally:
        relay.stop()
        relay.remove()
        site.stop()

    publish_figures(
        rates,
        flush_runs,
        etrn_runs,
        f"smtp-source, {options.messages} messages of 4 KB per run, {options.sessions} "
        f"sessions; {options.repeat} repetitions, configurations alternating. The fake site "
        "is aiosmtpd.",
    )


def publish_figures(
    rates: dict[str, list[float]], flush_runs: list[float], etrn_runs: list[float], notes: str
) -> None:
    """The acceptance and ETRN figures, ratios as medians of per-repetition ratios."""

    def median(name: str) -> float:
        return statistics.median(rates[name])

    ratio20 = statistics.median(
        h / b for h, b in zip(rates["hooks20"], rates["bare20"], strict=True)
    )
    ratio100 = statistics.median(
        h / b for h, b in zip(rates["hooks100"], rates["bare100"], strict=True)
    )
    milter20 = statistics.median(
        m / b for m, b in zip(rates["milter20"], rates["bare20"], strict=True)
    )
    milter100 = statistics.median(
        m / b for m, b in zip(rates["milter100"], rates["bare100"], strict=True)
    )
    flush, etrn = statistics.median(flush_runs), statistics.median(etrn_runs)
    publish(
        "hooks",
        command_line(),
        [
            Figure(
                "acceptance with etrn-policyd, 20 % intermittent",
                median("hooks20"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare20"),
                ">= 0.90x bare",
                ratio20 >= 0.90,
            ),
            Figure(
                "acceptance with etrn-policyd, 100 % intermittent",
                median("hooks100"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare100"),
                ">= 0.80x bare",
                ratio100 >= 0.80,
            ),
            Figure(
                "acceptance, same lines with a do-nothing server, 20 %",
                median("dunno20"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare20"),
                "-",
            ),
            Figure(
                "acceptance, same lines with a do-nothing server, 100 %",
                median("dunno100"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare100"),
                "-",
            ),
            Figure(
                "acceptance with etrn-milter, 20 % intermittent",
                median("milter20"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare20"),
                ">= 0.90x bare",
                milter20 >= 0.90,
            ),
            Figure(
                "acceptance with etrn-milter, 100 % intermittent",
                median("milter100"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare100"),
                ">= 0.80x bare",
                milter100 >= 0.80,
            ),
            Figure(
                "acceptance, same milter lines with a do-nothing pymilter, 20 %",
                median("nullmilter20"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare20"),
                "-",
            ),
            Figure(
                "acceptance, same milter lines with a do-nothing pymilter, 100 %",
                median("nullmilter100"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare100"),
                "-",
            ),
            Figure(
                "acceptance, same milter lines with a do-nothing pymilter adding the header, 100 %",
                median("headermilter100"),
                "msg/s",
                "bare Postfix, same mix",
                median("bare100"),
                "-",
            ),
            Figure(
                "ETRN (via etrn-policyd) to 100 delivered",
                etrn,
                "s",
                "postqueue -s to 100 delivered",
                flush,
                "<= 1.2x postqueue -s",
                etrn <= 1.2 * flush,
            ),
        ],
        f"{notes} Ratios are medians of per-repetition ratios (etrn-policyd {ratio20:.2f}x "
        f"and {ratio100:.2f}x, etrn-milter {milter20:.2f}x and {milter100:.2f}x).",
    )


if __name__ == "__main__":
    main()
