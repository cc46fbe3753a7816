"""The SQL index on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from etrn_ext.config import IndexSettings
from etrn_ext.core.errors import (
    DomainExistsError,
    IndexUnavailableError,
    SchemaVersionError,
    UnknownDomainError,
)
from etrn_ext.core.model import (
    DomainUsage,
    Event,
    EventKind,
    HeldRecipient,
    HeldState,
    NoticeKind,
    SentNotice,
)
from etrn_ext.core.names import DomainName
from etrn_ext.core.registry import DomainChanges, new_domain
from etrn_ext.core.trigger import Status, TriggerOutcome
from etrn_ext.index.engine import make_engine
from etrn_ext.index.rows import HeldValues
from etrn_ext.index.schema import SCHEMA_VERSION, UPGRADES, current_version, ensure_schema
from etrn_ext.index.store import IndexStore
from etrn_ext.index.writer import BatchWriter

SITE = DomainName("site.example")


def held(
    queue_id: str,
    recipient: str,
    *,
    size: int = 1000,
    arrival: float = 100.0,
    node: str = "relay1",
    state: HeldState = HeldState.HELD,
    domain: str = "site.example",
) -> HeldRecipient:
    return HeldRecipient(
        node=node,
        queue_id=queue_id,
        recipient=recipient,
        domain=domain,
        sender="alice@example.org",
        size=size,
        arrival_time=arrival,
        first_seen=arrival,
        last_seen=arrival,
        state=state,
    )


def test_registry_round_trip(store: IndexStore) -> None:
    domain = new_domain(
        "site.example",
        DomainChanges(
            allow=("192.0.2.0/24", "sasl:bob"),
            quota_messages="5",
            quota_bytes="1M",
            contacts=("ops@site.example",),
            note="ship",
        ),
        now=10.0,
    )
    store.add_domain(domain)
    assert store.get_domain(SITE) == domain
    assert store.list_domains() == [domain]
    with pytest.raises(DomainExistsError):
        store.add_domain(domain)


def test_save_and_remove_unknown_domain(store: IndexStore) -> None:
    ghost = new_domain("ghost.example", DomainChanges(), now=1.0)
    with pytest.raises(UnknownDomainError):
        store.save_domain(ghost)
    with pytest.raises(UnknownDomainError):
        store.remove_domain(ghost.name, with_held_rows=True)


def test_usage_counts_each_message_once(store: IndexStore) -> None:
    store.record_held(
        [
            held("A1", "a@site.example", size=1000, arrival=100.0),
            held("A1", "b@site.example", size=1000, arrival=100.0),
            held("B2", "c@site.example", size=500, arrival=50.0),
            held("B2", "c@site.example", size=500, arrival=50.0, node="relay2"),
            held("C3", "d@site.example", size=99, state=HeldState.DELIVERED),
            held("D4", "e@other.example", size=7, domain="other.example"),
        ]
    )
    usage = store.usage_by_domain()
    site = usage["site.example"]
    assert (site.messages, site.recipients, site.bytes, site.oldest_arrival) == (3, 4, 2000, 50.0)
    assert usage["other.example"].bytes == 7
    assert store.usage_by_domain(only=SITE).keys() == {"site.example"}
    assert [(row.queue_id, row.node) for row in store.held_for(SITE)] == [
        ("B2", "relay1"),
        ("B2", "relay2"),
        ("A1", "relay1"),
        ("A1", "relay1"),
    ]
    assert store.count_pending(SITE) == 4


def test_upsert_keeps_first_seen_and_updates_state(store: IndexStore) -> None:
    store.record_held([held("A1", "a@site.example", arrival=100.0)])
    later = HeldRecipient(
        node="relay1",
        queue_id="A1",
        recipient="a@site.example",
        domain="site.example",
        sender="alice@example.org",
        size=1000,
        arrival_time=100.0,
        first_seen=500.0,
        last_seen=500.0,
        state=HeldState.FLUSHING,
        reason="deferred transport",
    )
    store.record_held([later])
    [row] = store.held_for(SITE)
    assert (row.first_seen, row.last_seen, row.state, row.reason) == (
        100.0,
        500.0,
        HeldState.FLUSHING,
        "deferred transport",
    )


def test_remove_domain_drops_its_rows(store: IndexStore) -> None:
    store.add_domain(new_domain("site.example", DomainChanges(), now=1.0))
    store.record_held([held("A1", "a@site.example")])
    store.remove_domain(SITE, with_held_rows=True)
    assert store.held_for(SITE) == []
    assert store.get_domain(SITE) is None


def test_events_newest_first(store: IndexStore) -> None:
    for at, outcome in [(1.0, "first"), (3.0, "third"), (2.0, "second")]:
        store.record_event(
            Event(
                at=at,
                kind=EventKind.ETRN,
                node="relay1",
                actor="192.0.2.1",
                outcome=outcome,
                domain="site.example",
                detail={"client": "192.0.2.1"},
            )
        )
    store.record_event(
        Event(at=4.0, kind=EventKind.SYNC, node="relay1", actor="root", outcome="ok")
    )
    assert [e.outcome for e in store.events_for(SITE)] == ["third", "second", "first"]
    assert store.events_for(limit=1)[0].kind is EventKind.SYNC
    assert store.events_for(SITE)[0].detail == {"client": "192.0.2.1"}


def test_batched_writer_commits_in_few_transactions(store: IndexStore) -> None:
    writer = BatchWriter(store, max_rows=1000, queue_limit=10_000)
    for number in range(500):
        assert writer.submit_held(
            [held(f"{number:06X}", "a@site.example"), held(f"{number:06X}", "b@site.example")]
        )
    writer.start()
    assert writer.flush(timeout=30)
    writer.close(timeout=30)
    assert store.count_pending(SITE) == 1000
    assert writer.stats.committed == 1000
    assert writer.stats.transactions <= 2


@pytest.mark.expect_log("WARNING", "index writer queue full")
def test_writer_drops_rather_than_blocks_when_full(store: IndexStore) -> None:
    writer = BatchWriter(store, max_rows=10, queue_limit=2)
    assert writer.submit_held([held("AAAAAA", "a@site.example")])
    assert writer.submit_held([held("BBBBBB", "a@site.example")])
    assert not writer.submit_held([held("CCCCCC", "a@site.example")])
    assert writer.stats.dropped == 1


@pytest.mark.expect_log("ERROR", "index write")
def test_writer_survives_a_bad_row_and_writes_the_others(store: IndexStore) -> None:
    writer = BatchWriter(store, max_rows=1000, queue_limit=10_000)
    for number in range(10):
        assert writer.submit_held([held(f"{number:06X}", "a@site.example")])
    bad = held("BAD000", "a@site.example")
    assert writer.submit_held([dataclasses.replace(bad, sender=None)])  # type: ignore[arg-type]
    assert writer.submit_held([held("BAD001", "a@site.example", size=2**63)])
    for number in range(10, 20):
        assert writer.submit_held([held(f"{number:06X}", "a@site.example")])
    writer.start()
    assert writer.flush(timeout=10)
    assert (store.count_pending(SITE), writer.stats.failed) == (20, 2)
    assert writer.submit_held([held("AFTER0", "a@site.example")])
    assert writer.flush(timeout=10)
    writer.close(timeout=10)
    assert store.count_pending(SITE) == 21


@pytest.mark.expect_log("WARNING", "index writer closing: dropped 1 row(s)")
def test_writer_refuses_rows_once_closed(store: IndexStore) -> None:
    writer = BatchWriter(store, max_rows=10, queue_limit=10).start()
    writer.close(timeout=10)
    assert not writer.submit_held([held("AAAAAA", "a@site.example")])
    assert writer.stats.dropped == 1


class _StalledStore(IndexStore):
    """An index whose writes wait until released, as behind another program's long lock."""

    def __init__(self, store: IndexStore) -> None:
        super().__init__(store.engine)
        self.release = threading.Event()

    def write_batch(
        self, held_rows: Sequence[HeldValues], event_rows: Sequence[dict[str, Any]]
    ) -> None:
        self.release.wait(30)
        super().write_batch(held_rows, event_rows)


@pytest.mark.expect_log("ERROR", "3 row(s) left")
def test_close_says_how_many_rows_it_left(
    store: IndexStore, caplog: pytest.LogCaptureFixture
) -> None:
    stalled = _StalledStore(store)
    writer = BatchWriter(stalled, max_rows=1, queue_limit=10).start()
    for queue_id in ("AAAAAA", "BBBBBB", "CCCCCC"):
        assert writer.submit_held([held(queue_id, "a@site.example")])
    writer.close(timeout=0.2)
    assert "3 row(s) left" in caplog.text
    stalled.release.set()
    writer.close(timeout=10)
    assert store.count_pending(SITE) == 3


def test_schema_is_versioned_and_created_once(index_url: str) -> None:
    engine = make_engine(IndexSettings(url=index_url))
    assert ensure_schema(engine) == 0
    assert ensure_schema(engine) == SCHEMA_VERSION
    with engine.connect() as connection:
        assert current_version(connection) == SCHEMA_VERSION
        assert {"etrn_domains", "etrn_held", "etrn_events"} <= set(
            inspect(connection).get_table_names()
        )
    engine.dispose()


def test_upgrade_steps_run_in_order(index_url: str) -> None:
    engine = make_engine(IndexSettings(url=index_url))
    ensure_schema(engine)

    def add_column(connection):  # type: ignore[no-untyped-def]
        connection.execute(text("ALTER TABLE etrn_domains ADD COLUMN lifetime_seconds FLOAT"))

    assert (
        ensure_schema(engine, target=SCHEMA_VERSION + 1, upgrades={SCHEMA_VERSION + 1: add_column})
        == SCHEMA_VERSION
    )
    with engine.connect() as connection:
        assert current_version(connection) == SCHEMA_VERSION + 1
        columns = {column["name"] for column in inspect(connection).get_columns("etrn_domains")}
    assert "lifetime_seconds" in columns
    with pytest.raises(SchemaVersionError, match="newer than this etrn-ext"):
        ensure_schema(engine)
    engine.dispose()


def test_a_version_1_index_gains_the_trigger_history(index_url: str) -> None:
    engine = _as_version_1(index_url)
    assert ensure_schema(engine) == 1
    with engine.connect() as connection:
        assert current_version(connection) == SCHEMA_VERSION == 3
        assert "etrn_triggers" in inspect(connection).get_table_names()
    store = IndexStore(engine)
    store.record_triggers(
        "site", [TriggerOutcome("site.example", "mx1:25", Status.FLUSHED, "250 OK", 10.0)]
    )
    [entry] = store.trigger_history("site")
    assert (entry.last.reply, entry.last_reached_at, entry.last_flushed_at) == (
        "250 OK",
        10.0,
        10.0,
    )
    engine.dispose()


def test_trigger_history_per_target_and_relay(store: IndexStore) -> None:
    def outcome(at: float, relay: str, status: Status, reply: str) -> TriggerOutcome:
        return TriggerOutcome(
            "site.example",
            relay,
            status,
            reply,
            at,
            code=int(reply[:3]) if reply[0].isdigit() else None,
        )

    store.record_triggers(
        "site",
        [
            outcome(1.0, "mx1:25", Status.FLUSHED, "250 OK"),
            outcome(1.0, "mx2:25", Status.UNREACHABLE, "Connection refused"),
        ],
    )
    store.record_triggers(
        "site",
        [
            outcome(2.0, "mx1:25", Status.TEMPORARY, "458 busy"),
            outcome(2.0, "mx2:25", Status.UNREACHABLE, "Connection refused"),
        ],
    )
    store.record_triggers("other-site", [outcome(3.0, "mx1:25", Status.REFUSED, "459 no")])
    history = store.trigger_history("site")
    assert [(h.last.relay, h.last.at, h.last.status, h.last.code) for h in history] == [
        ("mx1:25", 2.0, Status.TEMPORARY, 458),
        ("mx2:25", 2.0, Status.UNREACHABLE, None),
    ]
    assert [(h.last_reached_at, h.last_flushed_at) for h in history] == [(2.0, 1.0), (None, None)]
    assert store.trigger_history("site", ["@site.example"]) == []


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = IndexStore.open(IndexSettings(url=f"sqlite:///{tmp_path}/sub/dir/index.sqlite"))
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    store.close()


def test_unreachable_database_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(IndexUnavailableError, match="cannot create"):
        IndexStore.open(IndexSettings(url=f"sqlite:///{blocker}/index.sqlite"))
    with pytest.raises(IndexUnavailableError, match="postgresql"):
        IndexStore.open(IndexSettings(url=f"postgresql+psycopg://nobody@/none?host={tmp_path}"))


def test_arrival_profile_splits_held_mail_in_one_pass(store: IndexStore) -> None:
    store.record_held(
        [
            held("A1", "a@site.example", size=1000, arrival=100.0),
            held("A1", "b@site.example", size=1000, arrival=100.0),
            held("B2", "c@site.example", size=500, arrival=200.0),
            held("C3", "d@site.example", size=300, arrival=300.0),
            held("C3", "gone@site.example", size=300, arrival=300.0, state=HeldState.DELIVERED),
            held("D4", "e@other.example", size=7, arrival=50.0, domain="other.example"),
        ]
    )
    profiles = store.arrival_profile([250.0, 150.0, 99.0], early_cutoff=200.0)
    site = profiles["site.example"]
    assert (site.usage.messages, site.usage.recipients, site.usage.bytes) == (3, 4, 1800)
    assert (site.usage.oldest_arrival, site.usage.newest_arrival) == (100.0, 300.0)
    assert site.recipients_before == (3, 2, 0)
    assert (site.early.messages, site.early.recipients, site.early.bytes) == (2, 3, 1500)
    assert (site.early.oldest_arrival, site.early.newest_arrival) == (100.0, 200.0)
    assert profiles["other.example"].recipients_before == (1, 1, 1)
    only = store.arrival_profile([], early_cutoff=0.0, only=SITE)
    assert only.keys() == {"site.example"}
    assert only["site.example"].early == DomainUsage("site.example")


def test_the_smallest_recipient_counts_the_message(store: IndexStore) -> None:
    store.record_held([held("A1", "b@site.example"), held("A1", "a@site.example")])
    store.record_held(
        [held("A1", "a@site.example", state=HeldState.DELIVERED), held("A1", "b@site.example")]
    )
    assert (store.usage_by_domain()["site.example"].messages, store.count_pending(SITE)) == (1, 1)


def test_latest_events_per_domain_and_kind(store: IndexStore) -> None:
    def event(at: float, kind: EventKind, domain: str | None, outcome: str) -> Event:
        return Event(at=at, kind=kind, node="r1", actor="x", outcome=outcome, domain=domain)

    for item in [
        event(1.0, EventKind.ETRN, "site.example", "old"),
        event(5.0, EventKind.ETRN, "site.example", "new"),
        event(9.0, EventKind.FLUSH, "site.example", "flush"),
        event(3.0, EventKind.ETRN, "ship.example", "ship"),
        event(3.0, EventKind.ETRN, "ship.example", "ship, same time, later"),
        event(7.0, EventKind.SYNC, None, "ok"),
    ]:
        store.record_event(item)
    latest = store.latest_events(EventKind.ETRN)
    assert {domain: e.outcome for domain, e in latest.items()} == {
        "site.example": "new",
        "ship.example": "ship, same time, later",
    }
    assert store.latest_events(EventKind.FLUSH, only=SITE)["site.example"].at == 9.0
    assert store.latest_events(EventKind.QUOTA) == {}


def test_recipient_states_of_flushed_messages(store: IndexStore) -> None:
    store.record_held(
        [
            held("A1", "a@site.example", state=HeldState.DELIVERED),
            held("A1", "b@site.example", state=HeldState.BOUNCED),
            held("A1", "c@site.example"),
            held("A1", "d@site.example", state=HeldState.DELIVERED, node="r2"),
            held("B2", "e@site.example"),
        ]
    )
    assert store.recipient_states(["A1", "ZZ"]) == {
        ("relay1", "A1", "site.example"): {"delivered": 1, "bounced": 1, "held": 1},
        ("r2", "A1", "site.example"): {"delivered": 1},
    }


def test_notices_are_remembered_per_domain_and_kind(store: IndexStore) -> None:
    def notice(sent_at: float) -> SentNotice:
        return SentNotice("site.example", NoticeKind.WAITING, sent_at, 50.0, ("ops@isp.example",))

    audit = Event(at=1.0, kind=EventKind.NOTICE, node="r1", actor="root", outcome="sent")
    store.record_notice(notice(10.0), audit)
    store.record_notice(notice(20.0), audit)
    assert store.notices_sent() == {("site.example", NoticeKind.WAITING): notice(20.0)}
    assert [e.kind for e in store.events_for(kinds={EventKind.NOTICE})] == [EventKind.NOTICE] * 2


def _as_version_1(index_url: str) -> Engine:
    """An index as etrn-ext 0.x with schema version 1 left it."""
    engine = make_engine(IndexSettings(url=index_url))
    ensure_schema(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE etrn_triggers"))
        connection.execute(text("DROP TABLE etrn_notices"))
        connection.execute(text("DROP INDEX ix_etrn_events_kind_domain_at"))
        connection.execute(text("DROP INDEX ix_etrn_held_pending"))
        connection.execute(text("ALTER TABLE etrn_held DROP COLUMN counts_message"))
        connection.execute(
            text(
                "CREATE INDEX ix_etrn_held_pending ON etrn_held "
                "(domain, node, queue_id, arrival_time, size) WHERE state IN ('held', 'flushing')"
            )
        )
        connection.execute(text("UPDATE etrn_schema SET version = 1"))
        for queue_id, recipient, state_value in [
            ("A1", "b@site.example", "held"),
            ("A1", "a@site.example", "held"),
            ("A1", "0@site.example", "delivered"),
            ("B2", "c@site.example", "held"),
        ]:
            connection.execute(
                text(
                    "INSERT INTO etrn_held (queue_id, node, recipient, domain, sender, size, "
                    "arrival_time, first_seen, last_seen, state, reason) VALUES "
                    "(:q, 'relay1', :r, 'site.example', '', 1000, 1.0, 1.0, 1.0, :s, '')"
                ),
                {"q": queue_id, "r": recipient, "s": state_value},
            )
    return engine


def test_version_1_index_upgrades_in_place(index_url: str) -> None:
    engine = _as_version_1(index_url)
    assert ensure_schema(engine) == 1
    with engine.connect() as connection:
        assert current_version(connection) == SCHEMA_VERSION == 3
        assert "etrn_notices" in inspect(connection).get_table_names()
    engine.dispose()
    store = IndexStore.open(IndexSettings(url=index_url))
    usage = store.usage_by_domain()["site.example"]
    assert (usage.messages, usage.recipients, usage.bytes) == (2, 3, 2000)
    store.close()


OPENERS = 8


def _open_index(url: str, barrier: Any, results: Any) -> None:
    """In a process of its own: open the index at the same moment as the others."""
    barrier.wait(timeout=60)
    try:
        IndexStore.open(IndexSettings(url=url)).close()
    except Exception as exc:  # noqa: BLE001 - the parent asserts on what each process met
        results.put(f"{type(exc).__name__}: {exc}")
    else:
        results.put("ok")


@pytest.mark.parametrize("start", ["fresh", "version-1"])
def test_processes_opening_one_index_at_once_all_succeed(index_url: str, start: str) -> None:
    if start == "version-1":
        _as_version_1(index_url).dispose()
    processes = multiprocessing.get_context("spawn")
    barrier, results = processes.Barrier(OPENERS), processes.Queue()
    openers = [
        processes.Process(target=_open_index, args=(index_url, barrier, results))
        for _ in range(OPENERS)
    ]
    for opener in openers:
        opener.start()
    outcomes = [results.get(timeout=120) for _ in openers]
    for opener in openers:
        opener.join(timeout=60)
    assert outcomes == ["ok"] * OPENERS
    engine = make_engine(IndexSettings(url=index_url))
    with engine.connect() as connection:
        assert current_version(connection) == SCHEMA_VERSION
        assert connection.execute(text("SELECT count(*) FROM etrn_schema")).scalar_one() == 1
    engine.dispose()


def test_upgrade_steps_may_run_again(index_url: str) -> None:
    engine = make_engine(IndexSettings(url=index_url))
    ensure_schema(engine)
    for step in UPGRADES.values():
        with engine.begin() as connection:
            step(connection)
    engine.dispose()
