"""Sendmail's queue files, log lines and configuration, as etrn-ext reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from etrn_ext.config import MtaSettings
from etrn_ext.core.model import DeliveryRecord, IntermittentDomain, Outcome, QueuedRecipient
from etrn_ext.core.names import parse_domain
from etrn_ext.core.sendmail_setup import (
    check_sendmail,
    etrn_runs,
    group_parent_directory,
    queue_directories,
    render_sendmail_config,
)
from etrn_ext.mta.sendmail import SendmailAdapter, parse_log_line, parse_qf

# The shape of a qf file after a partly failed run (research notes, section 4.2).
QF = """V8
T1795894704
K1795894705
N1
P210096
I254/0/2165008
MUser unknown
Fs
$_relay.lab.test [127.0.0.1]
S<alice@example.org>
MDeferred: 451 4.2.1 mailbox tmp1@site.test temporarily unavailable (sink)
rRFC822; tmp1@site.test
RPFD:<tmp1@site.test>
RPFD:<e@site.test>
H??Received: from client.example.org
H??X-ETRN-Held: site.test; relay=relay.test; queued=2026-11-28T21:06:40Z
.
"""


def test_qf_file() -> None:
    entry = parse_qf(QF, "6ASJcOZb020866", "etrn", 14)
    assert (entry.queue_id, entry.queue_name, entry.arrival_time, entry.size, entry.sender) == (
        "6ASJcOZb020866",
        "etrn",
        1795894704.0,
        14,
        "alice@example.org",
    )
    assert entry.recipients == (
        QueuedRecipient(
            "tmp1@site.test",
            "Deferred: 451 4.2.1 mailbox tmp1@site.test temporarily unavailable (sink)",
        ),
        QueuedRecipient("e@site.test", ""),
    )


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("H??Subject: x\x0cRPFD:<evil@site.test>", id="form-feed"),
        pytest.param("H??Subject: x\x1cRPFD:<evil@site.test>", id="file-separator"),
        pytest.param("H??Subject: x\u2028RPFD:<evil@site.test>", id="line-separator"),
        pytest.param("H??Subject: x\rRPFD:<evil@site.test>", id="carriage-return"),
        pytest.param("H??Subject: x\nRPFD:<evil@site.test>", id="record-after-headers"),
    ],
)
def test_a_header_cannot_add_a_recipient(header: str) -> None:
    # Sendmail splits its qf files on newlines only, and headers come after the envelope.
    text = QF.replace("H??Received: from client.example.org", header)
    recipients = parse_qf(text, "6ASJcOZb020866", "etrn", 14).recipients
    assert [r.address for r in recipients] == ["tmp1@site.test", "e@site.test"]


def test_the_envelope_status_is_no_recipient_status() -> None:
    # "MUser unknown" before S is the envelope's (mailq's line), not the first recipient's.
    text = QF.replace(
        "MDeferred: 451 4.2.1 mailbox tmp1@site.test temporarily unavailable (sink)\n", ""
    )
    recipients = parse_qf(text, "6ASJcOZb020866", "etrn", 14).recipients
    assert recipients == (QueuedRecipient("tmp1@site.test", ""), QueuedRecipient("e@site.test", ""))


def test_a_wildcard_queue_directory_is_every_matching_directory(tmp_path: Path) -> None:
    # QueueDirectory=/var/spool/mqueue/q* spreads the queue over q1, q2, ... (op guide 3.3).
    for name, queue_id in (("q1", "6ASJcOZb020866"), ("q2", "6ASJcOZb020867")):
        (tmp_path / name / "qf").mkdir(parents=True)
        (tmp_path / name / "qf" / f"qf{queue_id}").write_text(QF)
    (tmp_path / "other").mkdir()
    cf = tmp_path / "sendmail.cf"
    cf.write_text(f"O QueueDirectory={tmp_path}/q*\n")
    adapter = SendmailAdapter(MtaSettings(kind="sendmail", sendmail_cf=str(cf)))
    assert [(e.queue_name, e.queue_id) for e in adapter.list_queue()] == [
        ("q1", "6ASJcOZb020866"),
        ("q2", "6ASJcOZb020867"),
    ]

    assert group_parent_directory(f"{tmp_path}/q*") == str(tmp_path)  # for sendmail-config
    assert group_parent_directory("/var/spool/mqueue") == "/var/spool/mqueue"


@pytest.mark.parametrize(
    ("line", "records"),
    [
        pytest.param(
            "6ASJUmHX025259: to=<bob@site.test>, delay=00:00:48, xdelay=00:00:00, mailer=etrnsite, pri=120097, "
            "relay=[127.0.0.22] [127.0.0.22], dsn=2.0.0, stat=Sent (2.0.0 OK sink)",
            [
                DeliveryRecord(
                    "6ASJUmHX025259", "bob@site.test", Outcome.DELIVERED, "Sent (2.0.0 OK sink)"
                )
            ],
            id="sent-bare",
        ),
        pytest.param(
            "Nov 28 19:38:01 relay sm-mta[42]: 6ASJcOZb020866: to=<bad1@site.test>,<bad2@site.test>, delay=00:00:01, "
            "mailer=etrnsite, dsn=5.1.1, reply=550 5.1.1 no such user, stat=User unknown",
            [
                DeliveryRecord("6ASJcOZb020866", "bad1@site.test", Outcome.BOUNCED, "User unknown"),
                DeliveryRecord("6ASJcOZb020866", "bad2@site.test", Outcome.BOUNCED, "User unknown"),
            ],
            id="bounced-syslog-two",
        ),
        pytest.param(
            "6ASJSFcE024475: to=<carol@site.test>, delay=00:00:00, mailer=etrnsite, dsn=4.4.1, "
            "stat=Deferred: Connection refused by [127.0.0.22]",
            [],
            id="deferred-is-not-final",
        ),
        pytest.param(
            "6ASJTgh0025001: to=<bob@site.test>, delay=00:00:00, mailer=etrnsite, stat=queued",
            [],
            id="queued",
        ),
    ],
)
def test_log_lines(line: str, records: list[DeliveryRecord]) -> None:
    assert parse_log_line(line) == records


SITE = [IntermittentDomain(parse_domain("site.test"), include_subdomains=True)]
GOOD_CF = """O QueueDirectory=/var/spool/mqueue
O HoldExpensive=True
O QueueLA=40
O RefuseLA=60
Qetrn, P=/var/spool/mqueue/etrn, I=99d
Metrnhold, P=[IPC], F=mDFMuXae, S=EnvFromSMTP/HdrFromSMTP
Xetrn-milter, S=unix:/run/etrn-milter/milter.sock, T=S:10s;R:10s;E:30s
Ketrnpolicy socket -d5 -T<TEMP> unix:/run/etrn-socketmap/socketmap.sock
"""


def test_good_cf_and_its_queue_directories() -> None:
    assert check_sendmail(GOOD_CF, SITE, 2.5) == []
    assert queue_directories(GOOD_CF) == ["/var/spool/mqueue", "/var/spool/mqueue/etrn"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(("I=99d", "R=0"), "has R=0", id="runners-zero"),
        pytest.param(
            ("O HoldExpensive=True", "O HoldExpensive=False"),
            "HoldExpensive is off",
            id="not-holding",
        ),
        pytest.param(("O QueueLA=40\n", ""), "QueueLA is Sendmail's default", id="load-average"),
        pytest.param(
            (
                "O QueueDirectory",
                "O HostStatusDirectory=/var/lib/sendmail/host_status\nO QueueDirectory",
            ),
            "HostStatusDirectory",
            id="host-status",
        ),
        pytest.param(("T=S:10s", "F=T, T=S:10s"), "F=T or F=R", id="milter-tempfail"),
        pytest.param(("Ketrnpolicy", "Kotherpolicy"), "no check_etrn socketmap", id="no-socketmap"),
        pytest.param(("-d5", "-d3"), "etrn-socketmap may take 2.5s", id="socketmap-impatient"),
        pytest.param(
            ("Qetrn, P=/var/spool/mqueue/etrn, I=99d\n", ""), "no queue group etrn", id="no-group"
        ),
        pytest.param(("Metrnhold", "Mesmtp"), "no etrnhold mailer", id="no-mailer"),
    ],
)
def test_each_trap_in_a_cf(change: tuple[str, str], problem: str) -> None:
    findings = check_sendmail(GOOD_CF.replace(*change), SITE, 2.5)
    assert any(problem in finding.problem for finding in findings), findings


def test_rendered_lines() -> None:
    text = render_sendmail_config(SITE)
    assert "QUEUE_GROUP(`etrn', `P=/var/spool/mqueue/etrn, I=99d')dnl" in text
    assert (
        "INPUT_MAIL_FILTER(`etrn-milter', `S=unix:/run/etrn-milter/milter.sock, T=S:10s;R:10s;E:30s')dnl"
        in text
    )
    assert "F=T" not in text.replace("dnl etrn-milter without F=T or F=R", "")
    assert "site.test\tetrnhold:site.test" in text
    assert ".site.test\tetrnhold:site.test" in text
    assert "QGRP:site.test\tetrn" in text


@pytest.mark.parametrize(
    ("argument", "address", "runs"),
    [
        pytest.param("site.test", "bob@site.test", True, id="domain"),
        pytest.param("SITE.Test", "bob@site.test", True, id="case"),
        pytest.param("site.tes", "bob@site.test", True, id="prefix-of-domain"),
        pytest.param("site.test", "d@site.testing.org", True, id="longer-domain"),
        pytest.param("site.test", "c@notsite.test", False, id="not-a-suffix-match"),
        pytest.param("site.test>", "d@site.testing.org", False, id="closing-bracket"),
        pytest.param("site.test>", "bob@site.test", True, id="closing-bracket-match"),
        pytest.param("@site.test", "c@notsite.test", True, id="at-form-anywhere"),
        pytest.param("@bob", "bob@site.test", True, id="at-form-local-part"),
        pytest.param("@", "bob@site.test", True, id="at-form-empty-runs-all"),
        pytest.param("other.test", "bob@site.test", False, id="other"),
        pytest.param("B\u00dcRO.test", "x@b\u00fcro.test", False, id="ascii-case-only"),
    ],
)
def test_what_sendmails_own_etrn_runs(argument: str, address: str, runs: bool) -> None:
    # srvrsmtp.c: ETRN x looks for "@x", ETRN @x for "x", in every recipient (strcontainedin)
    assert etrn_runs(argument, address) is runs
