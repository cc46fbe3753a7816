"""Parsing what Postfix prints: postqueue -j, postconf, and final statuses in the mail log."""

from __future__ import annotations

import pytest

from etrn_ext.core.model import DeliveryRecord, Outcome, QueuedRecipient
from etrn_ext.mta.postfix import parse_log_line, parse_postconf, parse_queue_line

# Verbatim shapes from the research notes (Postfix 3.7.11).
QUEUE_LINE = (
    '{"queue_name": "deferred", "queue_id": "0346F20E014", "arrival_time": 1795893766, '
    '"message_size": 407, "forced_expire": false, "sender": "alice@example.org", "recipients": '
    '[{"address": "r1@site.test", "delay_reason": "deferred transport"}, {"address": "r3@other.test"}]}'
)


def test_postqueue_json_line() -> None:
    entry = parse_queue_line(QUEUE_LINE)
    assert (entry.queue_id, entry.queue_name, entry.arrival_time, entry.size, entry.sender) == (
        "0346F20E014",
        "deferred",
        1795893766.0,
        407,
        "alice@example.org",
    )
    assert entry.recipients == (
        QueuedRecipient("r1@site.test", "deferred transport"),
        QueuedRecipient("r3@other.test"),
    )


@pytest.mark.parametrize(
    ("line", "record"),
    [
        pytest.param(
            "Nov 28 19:21:52 relay pf-a/smtp[7597]: EC68720E883: to=<carol@site.test>, "
            "relay=127.0.0.12[127.0.0.12]:25, delay=2.1, delays=2/0/0/0.01, dsn=2.0.0, "
            "status=sent (250 2.0.0 Ok: accepted by site sink)",
            DeliveryRecord(
                "EC68720E883",
                "carol@site.test",
                Outcome.DELIVERED,
                "250 2.0.0 Ok: accepted by site sink",
            ),
            id="sent",
        ),
        pytest.param(
            "Nov 28 19:23:19 relay pf-a/smtp[22985]: C88E620E053: to=<bad1@site.test>, orig_to=<x@site.test>, "
            "relay=127.0.0.12[127.0.0.12]:25, delay=1.6, dsn=5.1.1, status=bounced (host said: 550 5.1.1 no)",
            DeliveryRecord(
                "C88E620E053", "bad1@site.test", Outcome.BOUNCED, "host said: 550 5.1.1 no"
            ),
            id="bounced-orig-to",
        ),
        pytest.param(
            "Nov 28 19:40:59 relay pf-a/qmgr[1]: 4jcLGr5FPmzJDKB: from=<alice@example.org>, "
            "status=expired, returned to sender",
            DeliveryRecord("4jcLGr5FPmzJDKB", "", Outcome.EXPIRED, "returned to sender"),
            id="expired",
        ),
        pytest.param(
            "Nov 28 19:22:36 relay pf-a/qmgr[1]: C876F20E0B4: from=<alice@example.org>, "
            "status=force-expired, returned to sender",
            DeliveryRecord("C876F20E0B4", "", Outcome.EXPIRED, "returned to sender"),
            id="force-expired",
        ),
        pytest.param(
            "Nov 28 19:38:56 relay pf-a/error[1]: 4jcLFD4bWZzBfrY: to=<scan@site.test>, relay=none, "
            "delay=0.03, dsn=4.3.2, status=deferred (deferred transport)",
            None,
            id="deferred-is-not-final",
        ),
        pytest.param(
            "Nov 28 19:21:52 relay pf-a/qmgr[1]: EC68720E883: removed", None, id="removed"
        ),
        pytest.param("garbage status=sent", None, id="garbage"),
    ],
)
def test_mail_log_statuses(line: str, record: DeliveryRecord | None) -> None:
    assert parse_log_line(line) == record


def test_postconf_output() -> None:
    output = (
        "relay_domains = site.test, other.test\nsmtpd_etrn_restrictions =\nmail_owner = postfix\n"
    )
    assert parse_postconf(output) == {
        "relay_domains": "site.test, other.test",
        "smtpd_etrn_restrictions": "",
        "mail_owner": "postfix",
    }
