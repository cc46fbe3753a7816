"""etrn-milter's callbacks driven by pymilter's TestCtx: negotiation, tagging, recording, fail-open."""

from __future__ import annotations

import email.message
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest
from Milter.testctx import TestCtx as MilterTestCtx

from etrn_ext.config import IndexSettings, MilterSettings, MtaSettings, Settings
from etrn_ext.core.registry import DomainChanges
from etrn_ext.daemons.milterd import EtrnMilter
from etrn_ext.index.writer import BatchWriter
from etrn_ext.service.context import Context
from etrn_ext.service.domains import add_domain
from etrn_ext.service.recording import HeldMailRecorder


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[HeldMailRecorder]:
    settings = Settings(
        index=IndexSettings(url=f"sqlite:///{tmp_path}/index.sqlite"),
        mta=MtaSettings(node_name="relay.test"),
    )
    ctx = Context(settings, actor="test")
    add_domain(ctx, "site.example", DomainChanges(include_subdomains=True))
    add_domain(ctx, "ship.example", DomainChanges())
    writer = BatchWriter(ctx.store, max_rows=100, queue_limit=1000).start()
    held = HeldMailRecorder(
        ctx, writer, holding_mailers=["etrn-only", "etrnsite"], clock=lambda: 1795900000.0
    )
    held.refresh_registry()
    EtrnMilter.recorder = held
    EtrnMilter.settings = MilterSettings()
    Milter.factory = EtrnMilter
    yield held
    writer.close()
    ctx.close()


def deliver(
    ctx: MilterTestCtx, sender: str, recipients: list[tuple[str, str]], queue_id: str, *params: str
) -> int:
    """One message the way Postfix feeds it: {i} from the 2nd RCPT, {rcpt_mailer} per RCPT."""
    ctx._msg = email.message.Message()
    assert ctx._envfrom(f"<{sender}>", *params) == Milter.NOREPLY  # negotiated: no reply
    for number, (recipient, mailer) in enumerate(recipients):
        if number == 1:
            ctx._setsymval("i", queue_id)
        ctx._setsymval("{rcpt_mailer}", mailer)
        assert ctx._envrcpt(f"<{recipient}>") == Milter.NOREPLY
    ctx._setsymval("i", queue_id)
    assert ctx._data() == Milter.CONTINUE
    assert ctx._eoh() == Milter.CONTINUE
    return ctx._eom()


def test_only_the_needed_callbacks_are_negotiated(recorder: HeldMailRecorder) -> None:
    ctx = MilterTestCtx()
    assert ctx._connect() == Milter.CONTINUE
    for skipped in (
        Milter.P_NOCONNECT,
        Milter.P_NOHELO,
        Milter.P_NOHDRS,
        Milter.P_NOEOH,
        Milter.P_NOBODY,
        Milter.P_NODATA,
        Milter.P_NOUNKNOWN,
    ):
        assert ctx._protocol & skipped
    assert ctx._protocol & Milter.P_NR_MAIL
    assert ctx._protocol & Milter.P_NR_RCPT
    assert not ctx._protocol & (Milter.P_NOMAIL | Milter.P_NORCPT)


def test_held_mail_is_tagged_and_recorded(recorder: HeldMailRecorder) -> None:
    ctx = MilterTestCtx()
    ctx._connect()
    rc = deliver(
        ctx,
        "alice@example.org",
        [
            ("a@site.example", "etrn-only"),
            ("b@mx.site.example", "etrn-only"),
            ("c@ship.example", "etrn-only"),
            ("d@other.example", "smtp"),
            ("e@unregistered.example", "etrn-only"),  # held by its transport alone
        ],
        "4jcLFD4bWZzBfrY",
        "SIZE=2048",
    )
    assert rc == Milter.CONTINUE
    assert ctx._msg["X-ETRN-Held"] == (
        "ship.example, site.example, unregistered.example; relay=relay.test; queued=2026-11-28T21:06:40Z"
    )
    recorder.writer.flush()
    rows = recorder.ctx.store.held_rows()
    assert sorted((r.queue_id, r.recipient, r.domain, r.sender, r.size) for r in rows) == [
        ("4jcLFD4bWZzBfrY", "a@site.example", "site.example", "alice@example.org", 2048),
        ("4jcLFD4bWZzBfrY", "b@mx.site.example", "site.example", "alice@example.org", 2048),
        ("4jcLFD4bWZzBfrY", "c@ship.example", "ship.example", "alice@example.org", 2048),
        (
            "4jcLFD4bWZzBfrY",
            "e@unregistered.example",
            "unregistered.example",
            "alice@example.org",
            2048,
        ),
    ]


def test_other_mail_is_left_alone(recorder: HeldMailRecorder) -> None:
    ctx = MilterTestCtx()
    ctx._connect()
    deliver(ctx, "bob@example.net", [("x@other.example", "smtp")], "D5D0020E7A9")
    assert ctx._msg["X-ETRN-Held"] is None
    recorder.writer.flush()
    assert recorder.ctx.store.held_rows() == []


def test_state_is_per_message(recorder: HeldMailRecorder) -> None:
    ctx = MilterTestCtx()
    ctx._connect()
    deliver(ctx, "a@example.org", [("one@site.example", "etrn-only")], "D5D0020E7A9")
    deliver(ctx, "b@example.org", [("two@other.example", "smtp")], "E5D0020E7A9")
    recorder.writer.flush()
    assert [r.recipient for r in recorder.ctx.store.held_rows()] == ["one@site.example"]


def test_no_header_when_switched_off(recorder: HeldMailRecorder) -> None:
    EtrnMilter.settings = MilterSettings(add_header=False)
    ctx = MilterTestCtx()
    ctx._connect()
    deliver(ctx, "a@example.org", [("one@site.example", "etrn-only")], "D5D0020E7A9")
    assert ctx._msg["X-ETRN-Held"] is None


@pytest.mark.expect_log("ERROR", "END-OF-MESSAGE callback failed")
def test_a_failure_inside_a_callback_accepts_the_mail(recorder: HeldMailRecorder) -> None:
    def broken(*_args: object) -> bool:
        raise RuntimeError("index on fire")

    recorder.record = broken  # type: ignore[method-assign]
    ctx = MilterTestCtx()
    ctx._connect()
    assert (
        deliver(ctx, "a@example.org", [("one@site.example", "etrn-only")], "D5D0020E7A9")
        == Milter.CONTINUE
    )


@pytest.mark.expect_log("WARNING", "without a valid queue id")
def test_a_bad_queue_id_is_not_recorded(recorder: HeldMailRecorder) -> None:
    ctx = MilterTestCtx()
    ctx._connect()
    deliver(ctx, "a@example.org", [("one@site.example", "etrn-only")], "-oQ/tmp")
    recorder.writer.flush()
    assert recorder.ctx.store.held_rows() == []


def smuggled(raw: bytes) -> str:
    """Text as pymilter hands over 8-bit bytes (Postfix with smtputf8_enable = no)."""
    return raw.decode("utf-8", "surrogateescape")


def test_undecodable_addresses_are_recorded_with_replacement_characters(
    recorder: HeldMailRecorder,
) -> None:
    # Lone surrogates cannot be encoded for SQLite: they would fail the writer's batch.
    ctx = MilterTestCtx()
    ctx._connect()
    recipients = [("a@site.example", "etrn-only"), (smuggled(b"e@\xffodd.example"), "etrn-only")]
    deliver(ctx, smuggled(b"\xff\xfebad@example.org"), recipients, "4jcLFD4bWZzBfrY")
    assert str(ctx._msg["X-ETRN-Held"]).startswith("site.example, \ufffdodd.example; ")
    assert recorder.writer.flush(timeout=5)
    rows = recorder.ctx.store.held_rows()
    assert sorted((r.recipient, r.domain, r.sender) for r in rows) == [
        ("a@site.example", "site.example", "\ufffd\ufffdbad@example.org"),
        ("e@\ufffdodd.example", "\ufffdodd.example", "\ufffd\ufffdbad@example.org"),
    ]


def test_the_recorder_cleans_what_any_hook_hands_it(recorder: HeldMailRecorder) -> None:
    recipients = [(smuggled(b"b\xe9@site.example"), "site.example")]
    assert recorder.record("4jcLFD4bWZzBfrZ", smuggled(b"\xc3@example.org"), 0, recipients)
    assert recorder.writer.flush(timeout=5)
    rows = recorder.ctx.store.held_rows()
    assert [(r.recipient, r.sender) for r in rows] == [
        ("b\ufffd@site.example", "\ufffd@example.org")
    ]
