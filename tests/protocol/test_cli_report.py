"""etrnctl report and notify through CliRunner, on a real SQLite index filled directly,
a postconf stand-in that reports the queue lifetime, and a real SMTP sink on loopback."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from etrn_ext.cli.main import cli
from etrn_ext.config import IndexSettings
from etrn_ext.core.model import Event, EventKind, HeldRecipient
from etrn_ext.core.registry import DomainChanges, new_domain
from etrn_ext.index.store import IndexStore
from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.mailsink import SINK_PORT, MailSink

HOUR = 3600.0
DAY = 86400.0
LONG = "a-rather-long-intermittent-domain-name-for-the-columns.example"
Etrnctl = Callable[..., Result]


def _rows(now: float) -> list[HeldRecipient]:
    """site.example: 3 messages (one for two recipients); LONG: 1 message."""

    def row(queue_id: str, recipient: str, age: float, size: int) -> HeldRecipient:
        domain = recipient.rpartition("@")[2]
        arrival = now - age
        return HeldRecipient(
            "relay.test", queue_id, recipient, domain, "a@example.org", size, arrival, now, now
        )

    return [
        row("4jcAAAAAAAAAAAA", "a@site.example", 2 * 60, 1000),
        row("4jcAAAAAAAAAAAA", "b@site.example", 2 * 60, 1000),
        row("4jcBBBBBBBBBBBB", "c@site.example", 3 * HOUR, 2000),
        row("4jcCCCCCCCCCCCC", "d@site.example", 4.5 * DAY, 4000),
        row("4jcDDDDDDDDDDDD", f"e@{LONG}", 30 * 60, 500),
    ]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    path = tmp_path / "index.sqlite"
    store = IndexStore.open(IndexSettings(url=f"sqlite:///{path}"))
    now = time.time()
    created = now - 30 * DAY
    store.add_domain(
        new_domain(
            "site.example",
            DomainChanges(contacts=("ops@isp.example",), quota_messages="6"),
            created,
        )
    )
    store.add_domain(new_domain(LONG, DomainChanges(), created))
    store.add_domain(new_domain("quiet.example", DomainChanges(), created))
    store.record_held(_rows(now))
    store.record_event(
        Event(
            now - HOUR,
            EventKind.ETRN,
            "relay.test",
            "192.0.2.7",
            "allowed",
            "site.example",
            {"client_name": "mx.site.example"},
        )
    )
    store.close()
    return path


def _config(tmp_path: Path, index: Path, extra: str = "") -> Path:
    postconf = tmp_path / "postconf"
    postconf.write_text('#!/bin/sh\necho "maximal_queue_lifetime = 5d"\n')
    postconf.chmod(0o755)
    config = tmp_path / "etrn-ext.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{index}"\n'
        f'[mta]\nnode_name = "relay.test"\npostconf = "{postconf}"\n'
        + (extra or "[report]\n")
        + f'template_directory = "{tmp_path}/templates"\n'
    )
    return config


@pytest.fixture
def etrnctl(tmp_path: Path, index: Path, mail_sink: MailSink) -> Etrnctl:
    config = _config(tmp_path, index, mail_sink.config())

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    return run


def test_text_report_fits_80_columns(etrnctl: Etrnctl) -> None:
    result = etrnctl("report", "--no-sync")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].endswith(" " + time.strftime("%Z"))  # the zone of every time below
    summary: dict[str, list[str]] = {}
    for line in lines:  # the summary table comes first, then the age table
        summary.setdefault(line.split()[0] if line else "", line.split()[1:])
    assert summary["site.example"][:3] == ["3", "4", "6.8K"]  # two-recipient message counted once
    assert summary["site.example"][4:6] == ["50%", "1"]  # quota 6 messages; 4.5d old expires <1d
    assert summary["TOTAL"][:3] == ["4", "5", "7.3K"]
    assert any(line.startswith("a-rather-long-intermittent") and "..." in line for line in lines)
    assert "Returned to their senders within 1d unless delivered:" in lines
    assert "  site.example: 1 message(s), 3.9K, the first at" in result.stdout
    assert "ETRN " in result.stdout
    assert "from mx.site.example[192.0.2.7]: allowed" in result.stdout
    assert "  quiet.example: no ETRN since it was registered 4w2d ago" in lines


def test_json_and_csv_carry_the_buckets(etrnctl: Etrnctl) -> None:
    data = json.loads(etrnctl("report", "--no-sync", "--format", "json").stdout)
    site = next(d for d in data["domains"] if d["domain"] == "site.example")
    assert (site["messages"], site["recipients"], site["bytes"]) == (3, 4, 7000)
    assert {k: v for k, v in site["ages"].items() if v} == {"5": 2, "320": 1, "1280+": 1}
    assert site["expiring"]["messages"] == 1
    assert site["last_etrn"]["client_name"] == "mx.site.example"
    assert data["totals"]["ages"]["40"] == 1  # the long domain's message, 30 minutes old
    assert data["queue_lifetime_seconds"] == 5 * DAY
    rows = list(
        csv.DictReader(io.StringIO(etrnctl("report", "--no-sync", "--format", "csv").stdout))
    )
    assert [row["domain"] for row in rows] == [LONG, "quiet.example", "site.example", "TOTAL"]
    assert (rows[2]["bytes"], rows[2]["age_1280+"], rows[2]["silent"]) == ("7000", "1", "no")
    assert rows[1]["silent"] == "yes"
    one = json.loads(
        etrnctl("report", "--no-sync", "--domain", "SITE.example", "--format", "json").stdout
    )
    assert [d["domain"] for d in one["domains"]] == ["site.example"]


def test_csv_never_hands_a_spreadsheet_a_formula(etrnctl: Etrnctl, index: Path) -> None:
    store = IndexStore.open(IndexSettings(url=f"sqlite:///{index}"))
    store.record_event(Event(time.time(), EventKind.ETRN, "relay.test", "=1+2", "-refused", LONG))
    store.close()
    rows = csv.DictReader(io.StringIO(etrnctl("report", "--no-sync", "--format", "csv").stdout))
    row = next(row for row in rows if row["domain"] == LONG)
    assert (row["last_etrn_client"], row["last_etrn_decision"]) == ("'=1+2", "'-refused")


def test_unknown_domain_exits_66_and_leaves_the_output_alone(
    etrnctl: Etrnctl, tmp_path: Path
) -> None:
    old = tmp_path / "report.html"
    old.write_text("yesterday's report")
    result = etrnctl(
        "report", "--domain", "ghost.example", "--format", "html", "--output", str(old)
    )
    assert result.exit_code == 66
    assert "ghost.example: not a registered intermittent domain" in result.stderr
    assert old.read_text() == "yesterday's report"


def test_unwritable_output_exits_73_and_writes_nothing(etrnctl: Etrnctl, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "report.txt"
    result = etrnctl("report", "--no-sync", "--output", str(missing))
    assert result.exit_code == 73
    assert f"cannot write {missing}: no such file or directory" in result.stderr
    directory = tmp_path / "a-directory"
    directory.mkdir()
    (directory / "keep").write_text("x")
    result = etrnctl("report", "--no-sync", "--output", str(directory))
    assert result.exit_code == 73
    assert "cannot write" in result.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["keep"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_replaces_the_old_file_whole(etrnctl: Etrnctl, tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")
    target.chmod(0o640)
    assert etrnctl("report", "--no-sync", "--format", "csv", "--output", str(target)).stdout == ""
    assert target.read_text().endswith("\n")
    assert target.read_text().splitlines()[-1].startswith("TOTAL,4,5,7500,")
    assert target.stat().st_mode & 0o777 == 0o640


def test_digest_is_text_with_an_html_alternative(etrnctl: Etrnctl, mail_sink: MailSink) -> None:
    result = etrnctl("report", "--no-sync", "--mail-to", "postmaster@isp.example")
    assert (result.exit_code, result.stdout) == (0, "")
    [(to, message)] = mail_sink.messages()
    assert to == ("postmaster@isp.example",)
    assert message["Subject"] == (
        "etrn-ext relay.test: 4 message(s) held for 2 domain(s), 1 expiring"
    )
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["From"] == "postmaster@relay.test"
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    plain = message.get_body(("plain",))
    assert plain is not None
    assert "Held recipients by age" in plain.get_content()
    assert etrnctl("report", "--no-sync", "--mail-to", "-oops").exit_code == 65


@pytest.mark.expect_log("WARNING", "report to postmaster@isp.example refused (550)")
def test_a_digest_every_recipient_refuses_exits_69(etrnctl: Etrnctl, mail_sink: MailSink) -> None:
    mail_sink.refuse["postmaster@isp.example"] = "550 5.1.1 no such user"
    result = etrnctl("report", "--no-sync", "--mail-to", "postmaster@isp.example")
    assert result.exit_code == 69
    assert "every recipient was refused" in result.stderr
    assert mail_sink.messages() == []


def test_notify_says_each_thing_once(etrnctl: Etrnctl, mail_sink: MailSink) -> None:
    dry = etrnctl("notify", "--no-sync", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "--- site.example: waiting notice\nTo: ops@isp.example\n" in dry.stdout
    assert "--- site.example: expiry notice" in dry.stdout
    assert "ETRN site.example" in dry.stdout
    assert "etrnctl trigger site.example" in dry.stdout
    assert mail_sink.messages() == []
    sent = etrnctl("notify", "--no-sync")
    assert sent.stdout.splitlines() == [
        "site.example: waiting notice sent to ops@isp.example",
        "site.example: expiry notice sent to ops@isp.example",
    ]
    subjects = [message["Subject"] for _to, message in mail_sink.messages()]
    assert subjects == [
        "3 message(s) for site.example waiting at relay.test",
        "1 message(s) for site.example will be returned to their senders",
    ]
    for _ in range(3):
        again = etrnctl("notify", "--no-sync")
        assert (again.exit_code, again.stdout) == (0, "")
    assert len(mail_sink.messages()) == 2
    audit = json.loads(etrnctl("events", "--kind", "notice", "--json").stdout)
    assert sorted(e["outcome"] for e in audit) == ["expiry", "waiting"]


@pytest.mark.expect_log("WARNING", "behind the site's own link")
def test_contacts_behind_the_link_are_skipped(etrnctl: Etrnctl, mail_sink: MailSink) -> None:
    etrnctl("domain", "set", "site.example", "--contact", "admin@site.example")
    etrnctl("notify", "--no-sync")
    assert {to for to, _message in mail_sink.messages()} == {("ops@isp.example",)}


@pytest.mark.expect_log("WARNING", "no contact outside the site")
@pytest.mark.expect_log("WARNING", "behind the site's own link")
def test_a_domain_whose_contacts_are_all_behind_the_link_is_warned_about_once(
    etrnctl: Etrnctl, mail_sink: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    etrnctl("domain", "set", "site.example", "--remove-contact", "ops@isp.example")
    etrnctl("domain", "set", "site.example", "--contact", "admin@site.example")
    for _ in range(3):
        assert etrnctl("notify", "--no-sync").exit_code == 0
    warnings = [r for r in caplog.records if "no contact outside the site" in r.getMessage()]
    assert len(warnings) == 2  # the waiting and the expiry notice, each once
    assert mail_sink.messages() == []


@pytest.mark.expect_log("WARNING", "refused")
def test_a_refused_notice_does_not_hold_up_the_others(
    tmp_path: Path, index: Path, mail_sink: MailSink
) -> None:
    config = _config(tmp_path, index, mail_sink.config() + "waiting_after_seconds = 600\n")

    def notify() -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), "notify", "--no-sync"])

    CliRunner().invoke(
        cli, ["--config", str(config), "domain", "set", LONG, "--contact", "noc@isp.example"]
    )
    # LONG's notice comes first and its only contact is refused
    mail_sink.refuse["noc@isp.example"] = "450 4.2.0 <noc@isp.example>: mailbox busy"
    first = notify()
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        "site.example: waiting notice sent to ops@isp.example",
        "site.example: expiry notice sent to ops@isp.example",
    ]
    mail_sink.refuse["noc@isp.example"] = "550 5.1.1 <noc@isp.example>: no such user"
    second = notify()  # a temporary refusal is tried again ...
    assert (second.exit_code, second.stdout) == (0, "")
    third = notify()  # ... a permanent one is remembered, not repeated
    assert (third.exit_code, third.stdout) == (0, "")
    refusals = [to for to, _message in mail_sink.messages() if "noc@isp.example" in to]
    assert refusals == []
    assert len(mail_sink.messages()) == 2


def test_admin_templates_replace_the_built_in_ones(
    etrnctl: Etrnctl, mail_sink: MailSink, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "waiting.txt").write_text(
        "Subject: [$relay] $domain: $messages\n\nOldest $oldest\n"
    )
    (templates / "expiry.txt").write_text("Subject: $domain\n\n$nonsense\n")
    result = etrnctl("notify", "--no-sync", "--dry-run")
    assert result.exit_code == 78
    assert "expiry.txt: unknown placeholder $nonsense" in result.stderr
    (templates / "expiry.txt").unlink()
    assert etrnctl("notify", "--no-sync").exit_code == 0
    assert next(m["Subject"] for _to, m in mail_sink.messages()) == "[relay.test] site.example: 3"


def test_unreachable_submission_host_exits_69_and_remembers_nothing(
    tmp_path: Path, index: Path, mail_sink: MailSink
) -> None:
    nobody = free_loopback_address((SINK_PORT,))
    down = _config(
        tmp_path, index, f'[report]\nsubmission_host = "{nobody}"\nsubmission_port = {SINK_PORT}\n'
    )
    result = CliRunner().invoke(cli, ["--config", str(down), "notify", "--no-sync"])
    assert result.exit_code == 69
    assert f"cannot send mail through {nobody}:{SINK_PORT}: connection refused" in result.stderr
    digest = CliRunner().invoke(
        cli, ["--config", str(down), "report", "--no-sync", "--mail-to", "a@isp.example"]
    )
    assert digest.exit_code == 69
    up = _config(tmp_path, index, mail_sink.config())
    retried = CliRunner().invoke(cli, ["--config", str(up), "notify", "--no-sync"])
    assert len(retried.stdout.splitlines()) == 2  # nothing was remembered as sent
