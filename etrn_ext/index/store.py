"""IndexStore: every read and write of the index goes through these methods.

The store turns rows into ``core.model`` values and back; it makes no decisions.
Database errors leave it as ``IndexUnavailableError`` so front ends can say which
index failed and why without knowing SQLAlchemy.
"""

from __future__ import annotations

import functools
import itertools
import string
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from etrn_ext.config import IndexSettings
from etrn_ext.core.errors import DomainExistsError, IndexUnavailableError, UnknownDomainError
from etrn_ext.core.model import (
    PENDING_STATES,
    ArrivalProfile,
    DomainUsage,
    Event,
    EventKind,
    HeldRecipient,
    HeldState,
    IntermittentDomain,
    NoticeKind,
    PendingRecipient,
    Quota,
    SentNotice,
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
    notices,
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
    "counts_message",
)


def _reports_database_errors(
    method: Callable[Concatenate[IndexStore, P], R],
) -> Callable[Concatenate[IndexStore, P], R]:
    """Turn SQLAlchemy failures into ``IndexUnavailableError`` carrying the (password-free) URL.

    Integrity and data errors pass through: the rows are wrong, not the index, and
    trying again later would not help (the batched writer retries without them).
    """

    @functools.wraps(method)
    def wrapper(store: IndexStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(store, *args, **kwargs)
        except (IntegrityError, DataError, IndexUnavailableError):
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
Counts = dict[str, int]
_USAGE_FIELDS: Final = ("messages", "recipients", "bytes", "oldest", "newest")


def _usage_columns(where: ColumnElement[bool] | None = None) -> list[ColumnElement[Any]]:
    """Aggregates in ``_USAGE_FIELDS`` order over pending rows (matching ``where``).

    ``counts_message`` is 1 on one row per message and domain, so these are one flat
    GROUP BY over the covering index: no per-message grouping (see the schema).
    """
    aggregates: list[ColumnElement[Any]] = [
        func.sum(held.c.counts_message),
        func.count(),
        func.sum(held.c.size * held.c.counts_message),
        func.min(held.c.arrival_time),
        func.max(held.c.arrival_time),
    ]
    if where is None:
        return aggregates
    return [aggregate.filter(where) for aggregate in aggregates]


def _usage(domain: str, values: Sequence[Any]) -> DomainUsage:
    messages, recipients, size, oldest, newest = values
    return DomainUsage(
        domain, int(messages or 0), int(recipients or 0), int(size or 0), oldest, newest
    )


def _pending_by_domain(
    columns: Sequence[ColumnElement[Any]], only: DomainName | None
) -> Select[Any]:
    query = select(held.c.domain, *columns).where(PENDING_CONDITION).group_by(held.c.domain)
    return query if only is None else query.where(held.c.domain == only.ascii)


QUEUE_IDS_PER_STATEMENT: Final = 500
_SLICE_LETTERS: Final = string.ascii_lowercase


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
        """Write whole messages' held recipients now (the CLI's path; daemons use the writer)."""
        self.write_batch(held_values(rows), [])

    def record_event(self, event: Event) -> None:
        self.write_batch([], [event.fields()])

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
        """Per domain: pending messages, recipients, bytes (once per message), oldest, newest."""
        query = _pending_by_domain(_usage_columns(), only)
        with self.engine.connect() as connection:
            return {row[0]: _usage(row[0], row[1:]) for row in connection.execute(query)}

    @_reports_database_errors
    def arrival_profile(
        self, cutoffs: Sequence[float], early_cutoff: float, only: DomainName | None = None
    ) -> dict[str, ArrivalProfile]:
        """Per domain, in one pass over the pending rows: the usage, the recipients that
        arrived at or before each of ``cutoffs``, and the mail that arrived at or before
        ``early_cutoff``.

        Each recipient adds one letter, naming its arrival slice between the sorted
        cutoffs, to a per-domain string; Python counts the letters. One CASE and one
        string aggregate per row cost a third of what one filtered count per cutoff did
        (bench/bench_report.py).
        """
        bounds = sorted({*cutoffs, early_cutoff})
        if len(bounds) >= len(_SLICE_LETTERS):
            raise ValueError(f"at most {len(_SLICE_LETTERS) - 1} arrival cutoffs")
        letters = _SLICE_LETTERS[: len(bounds) + 1]
        arrival = held.c.arrival_time
        # The letters are constants written into the SQL: as bound parameters SQLite
        # copies one per row, a fifth of the query's time.
        constants: list[ColumnElement[str]] = [literal_column(f"'{letter}'") for letter in letters]
        slice_letter = case(
            *((arrival <= bound, letter) for bound, letter in zip(bounds, constants, strict=False)),
            else_=constants[-1],
        )
        early = arrival <= early_cutoff
        query = _pending_by_domain(
            [
                *_usage_columns(),
                func.aggregate_strings(slice_letter, ""),
                func.sum(held.c.counts_message).filter(early),
                func.sum(held.c.size * held.c.counts_message).filter(early),
                func.max(arrival).filter(early),
            ],
            only,
        )
        profiles: dict[str, ArrivalProfile] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                domain, *values = row
                usage = _usage(domain, values[: len(_USAGE_FIELDS)])
                arrived, early_messages, early_bytes, early_newest = values[len(_USAGE_FIELDS) :]
                counts = itertools.accumulate(arrived.count(letter) for letter in letters)
                at_or_before = dict(zip(bounds, counts, strict=False))
                early_recipients = at_or_before[early_cutoff]
                profiles[domain] = ArrivalProfile(
                    usage,
                    tuple(at_or_before[cutoff] for cutoff in cutoffs),
                    _usage(
                        domain,
                        (
                            early_messages,
                            early_recipients,
                            early_bytes,
                            usage.oldest_arrival if early_recipients else None,
                            early_newest,
                        ),
                    ),
                )
        return profiles

    @_reports_database_errors
    def recipient_states(self, queue_ids: Collection[str]) -> dict[tuple[str, str, str], Counts]:
        """Recipients of these messages in every state, by (node, queue id, domain)."""
        found: dict[tuple[str, str, str], Counts] = {}
        wanted = sorted(set(queue_ids))
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), QUEUE_IDS_PER_STATEMENT):
                query = (
                    select(held.c.node, held.c.queue_id, held.c.domain, held.c.state, func.count())
                    .where(held.c.queue_id.in_(wanted[start : start + QUEUE_IDS_PER_STATEMENT]))
                    .group_by(held.c.node, held.c.queue_id, held.c.domain, held.c.state)
                )
                for node, queue_id, domain, state_value, count in connection.execute(query):
                    found.setdefault((node, queue_id, domain), {})[state_value] = int(count)
        return found

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

    @_reports_database_errors
    def latest_events(self, kind: EventKind, only: DomainName | None = None) -> dict[str, Event]:
        """The newest event of ``kind`` for each domain (or for ``only``)."""
        newest = (
            select(events.c.domain, func.max(events.c.at).label("at"))
            .where(events.c.kind == kind.value, events.c.domain.is_not(None))
            .group_by(events.c.domain)
        )
        if only is not None:
            newest = newest.where(events.c.domain == only.ascii)
        last = newest.subquery()
        query = (
            select(events)
            .join(last, and_(events.c.domain == last.c.domain, events.c.at == last.c.at))
            .where(events.c.kind == kind.value)
            .order_by(events.c.id)  # of two events at the same time, the later one wins
        )
        with self.engine.connect() as connection:
            return {row.domain: _event_from_row(row) for row in connection.execute(query)}

    # --- notices ----------------------------------------------------------------------

    @_reports_database_errors
    def notices_sent(self) -> dict[tuple[str, NoticeKind], SentNotice]:
        """The last notice of each kind sent about each domain."""
        with self.engine.connect() as connection:
            return {
                (row.domain, NoticeKind(row.kind)): SentNotice(
                    domain=row.domain,
                    kind=NoticeKind(row.kind),
                    sent_at=row.sent_at,
                    covers_until=row.covers_until,
                    recipients=tuple(row.recipients),
                    detail=row.detail,
                )
                for row in connection.execute(select(notices))
            }

    @_reports_database_errors
    def record_notice(self, notice: SentNotice, event: Event) -> None:
        """Remember ``notice`` in place of the last one of its kind, with its audit event."""
        values = {
            "sent_at": notice.sent_at,
            "covers_until": notice.covers_until,
            "recipients": list(notice.recipients),
            "detail": dict(notice.detail),
        }
        key = and_(notices.c.domain == notice.domain, notices.c.kind == notice.kind.value)
        with self.engine.begin() as connection:
            if connection.execute(update(notices).where(key).values(values)).rowcount == 0:
                connection.execute(
                    notices.insert().values(domain=notice.domain, kind=notice.kind.value, **values)
                )
            connection.execute(events.insert().values(event.fields()))


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
