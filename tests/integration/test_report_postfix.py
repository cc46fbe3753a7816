"""report and notify against a real private Postfix holding mail of controlled ages.

The method: Postfix stamps each message with its real arrival time, and making mail
older would mean editing queue files. The report's arithmetic takes ``now`` from the
service Context's clock instead of reading one, so these tests run the use cases with a
clock set minutes, hours or days after the arrival times ``postqueue -j`` reports: the
mail Postfix queued a moment ago is then 7 minutes, 2 hours or a day old. Two cohorts
sent a second apart, with the clock put half a second past a bucket bound or past the
expiry cut for the first cohort, show that the bounds are exact. The relay's
``maximal_queue_lifetime`` is 2d, so the forecast uses what the MTA says, not a default.
Clocks only move forward within a test, as they do on a relay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Etrnctl, relay_config

from etrn_ext.config import load_settings
from etrn_ext.core.report import AGE_BUCKET_LABELS, Report
from etrn_ext.service.context import Context
from etrn_ext.service.queue import flush_domain
from etrn_ext.service.report import build_report, plan_notices, send_notices
from etrn_ext.testing.mailsink import MailSink
from etrn_ext.testing.postfix import PrivatePostfix
from etrn_ext.testing.site import FakeSite

Relay = Callable[..., PrivatePostfix]
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
LIFETIME = {"maximal_queue_lifetime": "2d"}


def _held(relay: PrivatePostfix, count: int) -> dict[str, dict[str, Any]]:
    queue = relay.wait_for_queue(
        lambda q: len(q) == count and all(e["queue_name"] == "deferred" for e in q)
    )
    assert len(queue) == count, relay.log_tail()
    return {entry["queue_id"]: entry for entry in queue}


def _a_second_later(arrival: float) -> None:
    """Wait (at most ~1.2 s) until Postfix's next arrival time is a later second."""
    deadline = time.monotonic() + 5
    while time.time() < arrival + 1.2 and time.monotonic() < deadline:
        time.sleep(0.05)


class Clock:
    """The relay's clock as the use cases see it: set by the test."""

    def __init__(self, config: Path) -> None:
        self.settings = load_settings(str(config))
        self.now = time.time()

    def context(self, now: float) -> Context:
        assert now >= self.now, "clocks move forward"
        self.now = now
        return Context(self.settings, actor="cron", clock=lambda: now)

    def report(self, now: float) -> Report:
        ctx = self.context(now)
        try:
            return build_report(ctx)
        finally:
            ctx.close()

    def notify(self, now: float) -> list[tuple[str, str]]:
        ctx = self.context(now)
        try:
            sent = send_notices(ctx, plan_notices(ctx))
        finally:
            ctx.close()
        return [(item.notice.report.domain.name.ascii, item.notice.kind.value) for item in sent]


def _ages(report: Report, domain: str) -> dict[str, int]:
    [item] = [item for item in report.domains if item.domain.name.ascii == domain]
    return {
        label: count for label, count in zip(AGE_BUCKET_LABELS, item.ages, strict=True) if count
    }


def test_counts_bytes_buckets_and_expiry_forecast(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl], tmp_path: Path
) -> None:
    relay = make_relay(domains=["site.example", "ship.example"], main_cf=LIFETIME)
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example", "--quota-messages", "4")
    etrnctl("domain", "add", "ship.example")
    first = relay.send(["a@site.example", "b@site.example", "x@other.example"])
    second = relay.send(["c@site.example"], body="x" * 5000)
    cohort_a = _held(relay, 2)
    arrival_a = max(entry["arrival_time"] for entry in cohort_a.values())
    _a_second_later(arrival_a)
    third = relay.send(["d@ship.example"])
    queue = _held(relay, 3)
    arrival_b = queue[third]["arrival_time"]
    assert arrival_b > arrival_a

    # Now, through etrnctl: the implicit sync indexes the queue; everything is young.
    data = etrnctl.json("report", "--format", "json")
    site = next(d for d in data["domains"] if d["domain"] == "site.example")
    site_bytes = queue[first]["message_size"] + queue[second]["message_size"]
    assert (site["messages"], site["recipients"], site["bytes"]) == (2, 3, site_bytes)
    assert site["quota_use_percent"] == 50.0
    assert data["queue_lifetime_seconds"] == 2 * DAY
    assert data["totals"]["ages"]["5"] == 4

    clock = Clock(relay_config(relay, tmp_path))
    # Cohort A just over 5 minutes old, cohort B a second younger: either side of "5".
    report = clock.report(arrival_a + 5 * MINUTE + 0.5)
    assert _ages(report, "site.example") == {"10": 3}
    assert _ages(report, "ship.example") == {"5": 1}
    assert report.totals.messages == 3
    assert report.totals.bytes == sum(entry["message_size"] for entry in queue.values())

    report = clock.report(arrival_b + 2 * HOUR)
    assert (_ages(report, "site.example"), _ages(report, "ship.example")) == (
        {"160": 3},
        {"160": 1},
    )
    assert report.total_expiring.messages == 0
    assert report.first_expiry is None

    # A day after cohort A: its mail bounces within the 1d window; cohort B's does not yet.
    report = clock.report(arrival_a + DAY + 0.5)
    [site_item] = [i for i in report.domains if i.domain.name.ascii == "site.example"]
    assert (site_item.expiring.messages, site_item.expiring.bytes) == (2, site_bytes)
    assert site_item.first_expiry == min(e["arrival_time"] for e in cohort_a.values()) + 2 * DAY
    assert report.total_expiring.messages == 2
    assert _ages(report, "ship.example") == {"1280+": 1}
    report = clock.report(arrival_b + DAY)
    assert report.total_expiring.messages == 3


def test_notify_says_each_thing_once_per_domain(
    make_relay: Relay, tmp_path: Path, mail_sink: MailSink, fake_site: FakeSite
) -> None:
    relay = make_relay(
        domains=["site.example", "ship.example", "quiet.example", "mute.example"], main_cf=LIFETIME
    )
    config = relay_config(relay, tmp_path)
    config.write_text(config.read_text() + mail_sink.config())
    etrnctl = Etrnctl(config)
    etrnctl("domain", "add", "site.example", "--contact", "ops@isp.example")
    etrnctl("domain", "add", "ship.example", "--contact", "bridge@isp.example", "--outage", "14d")
    etrnctl("domain", "add", "quiet.example", "--contact", "quiet@isp.example")
    etrnctl("domain", "add", "mute.example")
    relay.send(["a@site.example"])
    relay.send(["b@site.example", "c@site.example"])
    relay.send(["d@ship.example"])
    relay.send(["e@mute.example"])
    queue = _held(relay, 4)
    newest = max(entry["arrival_time"] for entry in queue.values())
    clock = Clock(config)

    assert clock.notify(newest + HOUR) == []  # nothing waited 12 hours yet
    assert clock.notify(newest + 13 * HOUR) == [("site.example", "waiting")]  # ship: 14d outage
    assert clock.notify(newest + 14 * HOUR) == []
    assert clock.notify(newest + DAY + HOUR) == [
        ("ship.example", "expiry"),
        ("site.example", "expiry"),
    ]
    assert clock.notify(newest + DAY + 2 * HOUR) == []
    received = [(to, message["Subject"]) for to, message in mail_sink.messages()]
    assert received == [
        (("ops@isp.example",), "2 message(s) for site.example waiting at relay.test"),
        (
            ("bridge@isp.example",),
            "1 message(s) for ship.example will be returned to their senders",
        ),
        (("ops@isp.example",), "2 message(s) for site.example will be returned to their senders"),
    ]
    body = mail_sink.messages()[0][1].get_content()
    assert "ETRN site.example" in body
    assert "Mail that waits longer than 2d is returned to its senders." in body

    # The site collects its mail; new mail that waits again is a new wave, told once.
    ctx = clock.context(newest + DAY + 3 * HOUR)
    try:
        assert not flush_domain(ctx, "site.example", wait=20).remaining
    finally:
        ctx.close()
    _a_second_later(newest)
    relay.send(["f@site.example"])
    _held(relay, 3)
    assert clock.notify(newest + DAY + 4 * HOUR) == [
        ("site.example", "waiting"),
        ("site.example", "expiry"),
    ]
    assert clock.notify(newest + DAY + 5 * HOUR) == []
    assert len(mail_sink.messages()) == 5
    assert all("quiet" not in str(to) for to, _m in mail_sink.messages())
