"""The Postfix adapter's command lines, checked with recorder scripts standing in for Postfix
(and the Sendmail adapter's reading of its queue lifetime)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etrn_ext.config import MtaSettings
from etrn_ext.core.errors import MtaCommandError
from etrn_ext.core.names import parse_domain, parse_queue_id
from etrn_ext.mta.postfix import NotFastFlushError, PostfixAdapter
from etrn_ext.mta.sendmail import SendmailAdapter


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[str, Path]:
    log = tmp_path / "argv.log"
    return _script(tmp_path, "recorder", f'echo "$*" >> {log}'), log


def test_argv_is_built_from_validated_values(recorder: tuple[str, Path]) -> None:
    program, log = recorder
    adapter = PostfixAdapter(
        MtaSettings(postqueue=program, postsuper=program, config_directory="/etc/pf-b")
    )
    adapter.flush_domain(parse_domain("Site.Example"))
    adapter.flush_ids([parse_queue_id("4jcLFD4bWZzBfrY"), parse_queue_id("D5D0020E7A9")])
    adapter.postsuper("hold", [parse_queue_id("D5D0020E7A9"), parse_queue_id("0346F20E014")])
    lines = log.read_text().splitlines()
    assert lines[0] == "-c /etc/pf-b -s site.example"
    assert sorted(lines[1:3]) == ["-c /etc/pf-b -i 4jcLFD4bWZzBfrY", "-c /etc/pf-b -i D5D0020E7A9"]
    assert lines[3] == "-c /etc/pf-b -h D5D0020E7A9 -h 0346F20E014"


def test_failures_raise_with_their_evidence(tmp_path: Path) -> None:
    failing = _script(tmp_path, "failing", 'echo "postqueue: fatal: boom" >&2; exit 75')
    adapter = PostfixAdapter(MtaSettings(postqueue=failing, postconf=failing))
    with pytest.raises(MtaCommandError) as caught:
        list(adapter.list_queue())
    assert (caught.value.returncode, caught.value.reason) == (75, "postqueue: fatal: boom")
    with pytest.raises(MtaCommandError):
        adapter.parameters(["relay_domains"])


def test_exit_69_is_a_clear_fast_flush_error(tmp_path: Path) -> None:
    refusing = _script(
        tmp_path,
        "refusing",
        "echo 'postqueue: fatal: Flush service is not configured for destination \"site.example\"' >&2; exit 69",
    )
    with pytest.raises(NotFastFlushError, match="add it to relay_domains"):
        PostfixAdapter(MtaSettings(postqueue=refusing)).flush_domain(parse_domain("site.example"))


def test_a_failed_flush_or_lookup_runs_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    failing = _script(tmp_path, "failing", f'echo "$*" >> {calls}; echo "fatal: boom" >&2; exit 75')
    adapter = PostfixAdapter(MtaSettings(postqueue=failing, postmap=failing))
    with pytest.raises(MtaCommandError, match="fatal: boom") as flush_failure:
        adapter.flush_domain(parse_domain("site.example"))
    with pytest.raises(MtaCommandError, match="fatal: boom") as lookup_failure:
        adapter.lookup("hash:/etc/postfix/transport", "site.example")
    assert (flush_failure.value.returncode, lookup_failure.value.returncode) == (75, 75)
    assert calls.read_text().splitlines() == [
        "-c /etc/postfix -s site.example",
        "-c /etc/postfix -q site.example hash:/etc/postfix/transport",
    ]


def test_hung_commands_are_killed(tmp_path: Path) -> None:
    sleeper = _script(tmp_path, "sleeper", "exec sleep 30")
    adapter = PostfixAdapter(MtaSettings(postqueue=sleeper, command_timeout_seconds=0.3))
    with pytest.raises(MtaCommandError, match="timed out"):
        list(adapter.list_queue())
    with pytest.raises(MtaCommandError, match="timed out"):
        adapter.flush_domain(parse_domain("site.example"))


def test_missing_binary(tmp_path: Path) -> None:
    adapter = PostfixAdapter(MtaSettings(postqueue=str(tmp_path / "nope")))
    with pytest.raises(MtaCommandError, match="command not found"):
        adapter.flush_domain(parse_domain("site.example"))
    # The streamed listing's output files are released too (else a ResourceWarning).
    with pytest.raises(MtaCommandError, match="command not found"):
        adapter.list_queue()


def _sent(queue_id: str) -> str:
    """A Postfix status=sent line for one recipient of ``queue_id``."""
    return (
        f"relay/smtp[1]: {queue_id}: to=<{queue_id.lower()}@site.example>, relay=x, "
        "dsn=2.0.0, status=sent (250 ok)\n"
    )


def test_mail_log_is_read_incrementally(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text(_sent("AAAAAA1"))
    adapter = PostfixAdapter(MtaSettings())
    first, position = adapter.read_delivery_log(str(log), None)
    assert [r.queue_id for r in first] == ["AAAAAA1"]
    with log.open("a") as handle:
        handle.write(_sent("BBBBBB2"))
    second, position = adapter.read_delivery_log(str(log), position)
    assert [r.queue_id for r in second] == ["BBBBBB2"]
    log.unlink()
    log.write_text(_sent("CCCCCC3"))  # rotated away and deleted: the new file from its start
    third, _ = adapter.read_delivery_log(str(log), position)
    assert [r.queue_id for r in third] == ["CCCCCC3"]
    assert adapter.read_delivery_log(str(tmp_path / "none"), position) == ([], position)


def test_a_line_still_being_written_is_read_when_complete(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    whole = _sent("BBBBBB2")
    log.write_text(_sent("AAAAAA1") + whole[:40])
    adapter = PostfixAdapter(MtaSettings())
    first, position = adapter.read_delivery_log(str(log), None)
    assert [r.queue_id for r in first] == ["AAAAAA1"]
    with log.open("a") as handle:
        handle.write(whole[40:])
    second, _ = adapter.read_delivery_log(str(log), position)
    assert [r.queue_id for r in second] == ["BBBBBB2"]


@pytest.mark.parametrize("rotated_name", ["maillog.1", "maillog-20261128"])
def test_rotation_reads_the_rest_of_the_old_log_first(tmp_path: Path, rotated_name: str) -> None:
    log = tmp_path / "maillog"
    log.write_text(_sent("AAAAAA1"))
    adapter = PostfixAdapter(MtaSettings())
    _, position = adapter.read_delivery_log(str(log), None)
    with log.open("a") as handle:
        handle.write(_sent("BBBBBB2"))  # logged after the last read, before rotation
    log.rename(tmp_path / rotated_name)
    assert [r.queue_id for r in adapter.read_delivery_log(str(log), position)[0]] == ["BBBBBB2"]
    log.write_text(_sent("CCCCCC3"))
    records, _ = adapter.read_delivery_log(str(log), position)
    assert [r.queue_id for r in records] == ["BBBBBB2", "CCCCCC3"]


@pytest.mark.parametrize(("value", "seconds"), [("3", 3 * 86400), ("36h", 36 * 3600)])
def test_queue_lifetimes_without_a_unit_are_days(
    tmp_path: Path, value: str, seconds: float
) -> None:
    postconf = _script(tmp_path, "postconf", f'echo "maximal_queue_lifetime = {value}"')
    assert PostfixAdapter(MtaSettings(postconf=postconf)).queue_lifetime_seconds() == seconds
    sendmail_cf = tmp_path / "sendmail.cf"
    sendmail_cf.write_text(f"O QueueDirectory=/var/spool/mqueue\nO Timeout.queuereturn={value}\n")
    sendmail = SendmailAdapter(MtaSettings(kind="sendmail", sendmail_cf=str(sendmail_cf)))
    assert sendmail.queue_lifetime_seconds() == seconds
