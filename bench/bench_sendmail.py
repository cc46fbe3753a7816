"""Sendmail: flushing one site exactly by queue id vs Sendmail's own -qR, same queue.

A private Sendmail holds MESSAGES messages (held for ETRN, one queue group): SITE
of them for site.test, LOOKALIKES for site.testing.org (which Sendmail's substring
match also takes), the rest for 98 other intermittent domains. Each repetition flushes
site.test to a live fake site once each way, in the foreground (-qf), and refills;
then the site goes down and both ways are timed again (nothing can be delivered):

  exact       read the queue files for site.test's ids (SendmailAdapter.queue_ids_for,
              as etrn-ext's flush does), then one ``sendmail -qf -qI<id> -qI<id>...``
  substring   ``sendmail -qf -qR@site.test`` (what ETRN site.test does)

Both times include everything each needs; "wrong messages" counts recipients delivered
that are not in site.test. Needs root.
usage: bench_sendmail.py [--messages 5000] [--site 50] [--lookalikes 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from harness import Figure, command_line, publish

from etrn_ext.config import MtaSettings
from etrn_ext.core.names import parse_domain
from etrn_ext.mta.sendmail import SendmailAdapter
from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.sendmail import PrivateSendmail
from etrn_ext.testing.site import FakeSite
from etrn_ext.testing.smtp import send_message

SITE = parse_domain("site.test")
OTHERS = [f"s{number:02d}.test" for number in range(98)]


def fill(relay: PrivateSendmail, domains: list[str]) -> None:
    for number, domain in enumerate(domains):
        send_message(relay.address, relay.port, [f"user{number}@{domain}"])


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--site", type=int, default=50)
    parser.add_argument("--lookalikes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    site = FakeSite(free_loopback_address((2526,))).start()
    relay = PrivateSendmail(
        address=free_loopback_address((25,)),
        site_address=site.address,
        site_port=site.port,
        domains=["site.test", *OTHERS],
        other_routes={"site.testing.org": f"etrnhold:[{site.address}]"},
    )
    exact_runs, substring_runs, down_runs = [], [], {"exact": [], "substring": []}
    wrong = {"exact": 0, "substring": 0}
    try:
        relay.start()
        others = options.messages - options.site - options.lookalikes
        fill(relay, [OTHERS[number % len(OTHERS)] for number in range(others)])
        adapter = SendmailAdapter(
            MtaSettings(sendmail=str(relay.wrapper), sendmail_cf=str(relay.cf))
        )
        for _ in range(options.repeat):
            for mode in ("exact", "substring"):
                # The exact flush leaves the lookalikes queued and -qR takes them, so
                # each run starts with the same SITE and LOOKALIKES waiting.
                lookalikes = options.lookalikes if mode == "exact" else 0
                fill(relay, ["site.test"] * options.site + ["site.testing.org"] * lookalikes)
                site.messages.clear()
                if mode == "exact":
                    seconds = timed(
                        lambda: relay.command(
                            "-qf",
                            *(f"-qI{queue_id}" for queue_id in adapter.queue_ids_for(SITE)),
                        )
                    )
                    exact_runs.append(seconds)
                else:
                    seconds = timed(lambda: relay.command("-qf", "-qR@site.test"))
                    substring_runs.append(seconds)
                received = site.wait_for_recipients(options.site, timeout=60)
                wrong[mode] += sum(not r.endswith("@site.test") for r in received)
        # Site down, as in the research: both runs fail to connect and the mail stays.
        fill(relay, ["site.test"] * options.site + ["site.testing.org"] * options.lookalikes)
        site.stop()
        for _ in range(options.repeat):
            down_runs["exact"].append(
                timed(
                    lambda: relay.command(
                        "-qf", *(f"-qI{queue_id}" for queue_id in adapter.queue_ids_for(SITE))
                    )
                )
            )
            down_runs["substring"].append(timed(lambda: relay.command("-qf", "-qR@site.test")))
    finally:
        relay.stop()
        relay.remove()
        site.stop()
    exact, substring = statistics.median(exact_runs), statistics.median(substring_runs)
    exact_down, substring_down = (statistics.median(down_runs[m]) for m in ("exact", "substring"))
    publish(
        "sendmail",
        command_line(),
        [
            Figure(
                f"exact flush of {options.site} of {options.messages:,} held messages",
                exact,
                "s",
                "sendmail -qf -qR@site.test",
                substring,
                "not slower than -qR",
                exact <= substring,
            ),
            Figure(
                f"exact flush of {options.site} of {options.messages:,}, site down",
                exact_down,
                "s",
                "sendmail -qf -qR@site.test, site down",
                substring_down,
                "not slower than -qR",
                exact_down <= substring_down,
            ),
            Figure(
                "wrong messages moved by the exact flush",
                float(wrong["exact"]),
                "msgs",
                "by -qR@site.test",
                float(wrong["substring"]),
                "0",
                wrong["exact"] == 0,
            ),
        ],
        f"Medians of {options.repeat} runs each, site up (real deliveries to an aiosmtpd site); "
        f"wrong messages are summed over the runs ({options.lookalikes} site.testing.org "
        "messages are waiting in each run).",
    )


if __name__ == "__main__":
    main()
