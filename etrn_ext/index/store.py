"""IndexStore: every read and write of the index goes through these methods.

The store turns rows into ``core.model`` values and back; it makes no decisions.
Database errors leave it as ``IndexUnavailableError`` so front ends can say which
index failed and why without knowing SQLAlchemy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from sqlalchemy import Engine, Row, bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from etrn_ext.config import IndexSettings
from etrn_ext.core.errors import DomainExistsError, IndexUnavailableError, UnknownDomainError
from etrn_ext.core.model import (
    PENDING_STATES,
    DomainUsage,
    Event,
    EventKind,
    HeldRecipient,
    HeldState,
    IntermittentDomain,
    PendingRecipient,
    Quota,
)
from etrn_ext.core.names import DomainName
from etrn_ext.core.registry import clients_from_texts
from etrn_ext.core.trigger import NOT_REACHED, SUCCESS, Status, TriggerHistory, TriggerOutcome
from etrn_ext.index.engine import make_engine
from etrn_ext.index.rows import HELD_COLUMNS, HeldValues, held_values
from etrn_ext.index.schema import (
    PENDING_CONDITION,
    domains,
    ensure_schema,
    events,
    held,
    state,
    triggers,
)

P = ParamSpec("P")
R = TypeVar("R")

_HELD_UPDATED_ON_CONFLICT = (
    "domain",
    "sender",
    "size",
    "arrival_time",
    "last_seen",
    "state",
    "reason",
)


def _reports_database_errors(
    method: Callable[Concatenate[IndexStore, P], R],
) -> Callable[Concatenate[IndexStore, P], R]:
    """Turn SQLAlchemy failures into ``IndexUnavailableError`` carrying the (password-free) URL."""

    @functools.wraps(method)
    def wrapper(store: IndexStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(store, *args, **kwargs)
        except (IntegrityError, IndexUnavailableError):
            raise
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise IndexUnavailableError(store.url, str(cause).splitlines()[0]) from exc

    return wrapper


def _domain_values(domain: IntermittentDomain) -> dict[str, Any]:
    return {
        "name": domain.name.ascii,
        "include_subdomains": domain.include_subdomains,
        "allow": domain.clients.as_texts(),
        "quota_messages": domain.quota.messages,
        "quota_bytes": domain.quota.bytes,
        "contacts": list(domain.contacts),
        "note": domain.note,
        "expected_outage_seconds": domain.expected_outage_seconds,
        "created_at": domain.created_at,
        "updated_at": domain.updated_at,
    }


def _domain_from_row(row: Row[Any]) -> IntermittentDomain:
    return IntermittentDomain(
        name=DomainName(row.name),
        include_subdomains=row.include_subdomains,
        clients=clients_from_texts(row.allow),
        quota=Quota(row.quota_messages, row.quota_bytes),
        contacts=tuple(row.contacts),
        note=row.note,
        expected_outage_seconds=row.expected_outage_seconds,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


UPSERT_ROWS_PER_STATEMENT: Final = 200


@functools.cache
def _upsert_sql(placeholder: str, rows: int) -> str:
    """INSERT of ``rows`` rows ... ON CONFLICT DO UPDATE, the same text on SQLite and PostgreSQL.

    Many rows per statement, run by the driver on plain values: SQLAlchemy's per-row
    parameter processing, and SQLite releasing the GIL once per row, would each cost
    the daemons a large share of their throughput (see docs/benchmarks.md).
    """
    columns = ", ".join(HELD_COLUMNS)
    one_row = "(" + ", ".join([placeholder] * len(HELD_COLUMNS)) + ")"
    updates = ", ".join(f"{name} = excluded.{name}" for name in _HELD_UPDATED_ON_CONFLICT)
    conflict = f"ON CONFLICT (queue_id, node, recipient) DO UPDATE SET {updates}"
    values = ", ".join([one_row] * rows)
    # Built from constants only; every value is a bound parameter.
    return f"INSERT INTO {held.name} ({columns}) VALUES {values} {conflict}"  # noqa: S608


def _held_from_row(row: Row[Any]) -> HeldRecipient:
    return HeldRecipient(
        node=row.node,
        queue_id=row.queue_id,
        recipient=row.recipient,
        domain=row.domain,
        sender=row.sender,
        size=row.size,
        arrival_time=row.arrival_time,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        state=HeldState(row.state),
        reason=row.reason,
    )


def event_values(event: Event) -> dict[str, Any]:
    """Column values of one audit event."""
    return {
        "at": event.at,
        "kind": event.kind.value,
        "node": event.node,
        "domain": event.domain,
        "actor": event.actor,
        "outcome": event.outcome,
        "detail": dict(event.detail),
    }


def _event_from_row(row: Row[Any]) -> Event:
    return Event(
        at=row.at,
        kind=EventKind(row.kind),
        node=row.node,
        actor=row.actor,
        outcome=row.outcome,
        domain=row.domain,
        detail=row.detail,
    )


class IndexStore:
    """The index of one etrn-ext installation (shared by relays when on PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._placeholder = "?" if engine.dialect.paramstyle == "qmark" else "%s"

    @classmethod
    def open(cls, settings: IndexSettings) -> IndexStore:
        """Open the index named by the settings, creating or upgrading its schema."""
        engine = make_engine(settings)
        store = cls(engine)
        store.prepare()
        return store

    @_reports_database_errors
    def prepare(self) -> int:
        """Create or upgrade the schema; returns the version found before (0: new index)."""
        return ensure_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- registry ---------------------------------------------------------------------

    @_reports_database_errors
    def add_domain(self, domain: IntermittentDomain) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(domains.insert().values(_domain_values(domain)))
        except IntegrityError as exc:
            raise DomainExistsError(domain.name.ascii) from exc

    @_reports_database_errors
    def save_domain(self, domain: IntermittentDomain) -> None:
        """Replace an existing entry (its name cannot change)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(domains)
                .where(domains.c.name == domain.name.ascii)
                .values(_domain_values(domain))
            )
            if result.rowcount == 0:
                raise UnknownDomainError(domain.name.ascii)

    @_reports_database_errors
    def remove_domain(self, name: DomainName, *, with_held_rows: bool) -> None:
        """Delete the entry, and its held rows when asked (the mail itself stays queued)."""
        with self.engine.begin() as connection:
            result = connection.execute(delete(domains).where(domains.c.name == name.ascii))
            if result.rowcount == 0:
                raise UnknownDomainError(name.ascii)
            if with_held_rows:
                connection.execute(delete(held).where(held.c.domain == name.ascii))

    @_reports_database_errors
    def get_domain(self, name: DomainName) -> IntermittentDomain | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(domains).where(domains.c.name == name.ascii)).first()
        return _domain_from_row(row) if row else None

    @_reports_database_errors
    def list_domains(self) -> list[IntermittentDomain]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(domains).order_by(domains.c.name))
            return [_domain_from_row(row) for row in rows]

    # --- held mail --------------------------------------------------------------------

    @_reports_database_errors
    def write_batch(
        self, held_rows: Sequence[HeldValues], event_rows: Sequence[dict[str, Any]]
    ) -> None:
        """Upsert held recipients and append events in one transaction (the writer's unit)."""
        with self.engine.begin() as connection:
            # One row per key, the last one: PostgreSQL refuses to update a row twice in
            # one statement, and the last write is the one that counts anyway.
            unique = list({(row[0], row[1], row[2]): row for row in held_rows}.values())
            for start in range(0, len(unique), UPSERT_ROWS_PER_STATEMENT):
                chunk = unique[start : start + UPSERT_ROWS_PER_STATEMENT]
                values = tuple(value for row in chunk for value in row)
                connection.exec_driver_sql(_upsert_sql(self._placeholder, len(chunk)), values)
            if event_rows:
                connection.execute(events.insert(), list(event_rows))

    def record_held(self, rows: Iterable[HeldRecipient]) -> None:
        """Write held recipients now (the CLI's path; daemons use the batched writer)."""
        self.write_batch([held_values(row) for row in rows], [])

    def record_event(self, event: Event) -> None:
        self.write_batch([], [event_values(event)])

    def held_for(self, domain: DomainName) -> list[HeldRecipient]:
        """Pending recipients of one domain (all relays), oldest first."""
        return self.held_rows(domain=domain)

    @_reports_database_errors
    def held_rows(
        self,
        *,
        domain: DomainName | None = None,
        states: Sequence[HeldState] = PENDING_STATES,
        arrived_before: float | None = None,
        queue_id: str | None = None,
    ) -> list[HeldRecipient]:
        """Recipients matching all given filters, oldest message first."""
        query = select(held).order_by(
            held.c.arrival_time, held.c.queue_id, held.c.node, held.c.recipient
        )
        if tuple(states) == PENDING_STATES:
            query = query.where(PENDING_CONDITION)  # the form the partial index answers
        else:
            query = query.where(held.c.state.in_([state.value for state in states]))
        if domain is not None:
            query = query.where(held.c.domain == domain.ascii)
        if arrived_before is not None:
            query = query.where(held.c.arrival_time < arrived_before)
        if queue_id is not None:
            query = query.where(held.c.queue_id == queue_id)
        with self.engine.connect() as connection:
            return [_held_from_row(row) for row in connection.execute(query)]

    @_reports_database_errors
    def pending_rows(self, node: str) -> dict[tuple[str, str], PendingRecipient]:
        """This relay's pending recipients keyed by (queue id, recipient), for reconciling."""
        columns = [held.c[name] for name in ("queue_id", "recipient", *PendingRecipient._fields)]
        query = select(*columns).where(held.c.node == node, PENDING_CONDITION)
        with self.engine.connect() as connection:
            return {
                (row[0], row[1]): PendingRecipient(*row[2:]) for row in connection.execute(query)
            }

    @_reports_database_errors
    def set_states(
        self,
        node: str,
        changes: Sequence[tuple[str, str, HeldState, str]],
        *,
        only_if: HeldState | None = None,
    ) -> None:
        """Set (queue id, recipient) -> (state, reason) on this relay's rows (in ``only_if``)."""
        if not changes:
            return
        statement = (
            update(held)
            .where(
                held.c.queue_id == bindparam("q"),
                held.c.node == bindparam("n"),
                held.c.recipient == bindparam("r"),
            )
            .values(state=bindparam("s"), reason=bindparam("why"))
        )
        if only_if is not None:
            statement = statement.where(held.c.state == only_if.value)
        with self.engine.begin() as connection:
            connection.execute(
                statement,
                [{"q": q, "n": node, "r": r, "s": s.value, "why": why} for q, r, s, why in changes],
            )

    @_reports_database_errors
    def touch_pending(self, node: str, now: float) -> None:
        """Mark every pending row of this relay as seen in the queue at ``now``."""
        with self.engine.begin() as connection:
            connection.execute(
                update(held).where(held.c.node == node, PENDING_CONDITION).values(last_seen=now)
            )

    # --- per-relay state --------------------------------------------------------------

    @_reports_database_errors
    def get_state(self, node: str, key: str) -> Any:
        query = select(state.c.value).where(state.c.node == node, state.c.key == key)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one_or_none()

    @_reports_database_errors
    def set_state(self, node: str, key: str, value: Any) -> None:
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(state).where(state.c.node == node, state.c.key == key).values(value=value)
            )
            if changed.rowcount == 0:
                connection.execute(state.insert().values(node=node, key=key, value=value))

    @_reports_database_errors
    def count_pending(self, domain: DomainName) -> int:
        query = (
            select(func.count())
            .select_from(held)
            .where(held.c.domain == domain.ascii, PENDING_CONDITION)
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    @_reports_database_errors
    def usage_by_domain(self, only: DomainName | None = None) -> dict[str, DomainUsage]:
        """Per domain: pending messages, recipients, bytes (once per message), oldest arrival."""
        pending = select(
            held.c.domain,
            func.count().label("recipients"),
            func.max(held.c.size).label("size"),
            func.min(held.c.arrival_time).label("arrival"),
        ).where(PENDING_CONDITION)
        if only is not None:
            pending = pending.where(held.c.domain == only.ascii)
        per_message = pending.group_by(held.c.domain, held.c.node, held.c.queue_id).subquery()
        query = select(
            per_message.c.domain,
            func.count(),
            func.sum(per_message.c.recipients),
            func.sum(per_message.c.size),
            func.min(per_message.c.arrival),
        ).group_by(per_message.c.domain)
        with self.engine.connect() as connection:
            return {
                row[0]: DomainUsage(row[0], int(row[1]), int(row[2]), int(row[3]), row[4])
                for row in connection.execute(query)
            }

    # --- events -----------------------------------------------------------------------

    @_reports_database_errors
    def events_for(
        self,
        domain: DomainName | None = None,
        *,
        kinds: set[EventKind] | None = None,
        limit: int = 50,
    ) -> list[Event]:
        """The newest events, optionally of one domain and some kinds, newest first."""
        query = select(events).order_by(events.c.at.desc(), events.c.id.desc()).limit(limit)
        if domain is not None:
            query = query.where(events.c.domain == domain.ascii)
        if kinds:
            query = query.where(events.c.kind.in_(sorted(kind.value for kind in kinds)))
        with self.engine.connect() as connection:
            return [_event_from_row(row) for row in connection.execute(query)]

    # --- the site's trigger history -----------------------------------------------------

    @_reports_database_errors
    def record_triggers(self, node: str, outcomes: Sequence[TriggerOutcome]) -> None:
        if not outcomes:
            return
        rows = [
            {
                "at": outcome.at,
                "node": node,
                "target": outcome.target,
                "relay": outcome.relay,
                "address": outcome.address,
                "status": outcome.status.value,
                "code": outcome.code,
                "reply": outcome.reply,
                "pending_messages": outcome.pending_messages,
                "attempts": outcome.attempts,
                "encrypted": outcome.encrypted,
            }
            for outcome in outcomes
        ]
        with self.engine.begin() as connection:
            connection.execute(triggers.insert(), rows)

    @_reports_database_errors
    def trigger_history(self, node: str, targets: Sequence[str] = ()) -> list[TriggerHistory]:
        """Per (target, relay): the last outcome, and when the relay last answered and flushed."""
        status = triggers.c.status
        reached = [s.value for s in NOT_REACHED]
        flushed = [s.value for s in SUCCESS]
        per_pair = select(
            func.max(triggers.c.id).label("last_id"),
            func.max(case((status.not_in(reached), triggers.c.at))).label("reached_at"),
            func.max(case((status.in_(flushed), triggers.c.at))).label("flushed_at"),
        ).where(triggers.c.node == node)
        if targets:
            per_pair = per_pair.where(triggers.c.target.in_(list(targets)))
        pairs = per_pair.group_by(triggers.c.target, triggers.c.relay).subquery()
        query = (
            select(triggers, pairs.c.reached_at, pairs.c.flushed_at)
            .join(pairs, triggers.c.id == pairs.c.last_id)
            .order_by(triggers.c.target, triggers.c.relay)
        )
        with self.engine.connect() as connection:
            return [
                TriggerHistory(_outcome_from_row(row), row.reached_at, row.flushed_at)
                for row in connection.execute(query)
            ]


def _outcome_from_row(row: Row[Any]) -> TriggerOutcome:
    return TriggerOutcome(
        target=row.target,
        relay=row.relay,
        status=Status(row.status),
        reply=row.reply,
        at=row.at,
        address=row.address,
        code=row.code,
        pending_messages=row.pending_messages,
        attempts=row.attempts,
        encrypted=row.encrypted,
    )
