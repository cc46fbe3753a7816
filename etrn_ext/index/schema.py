"""Tables of the index and the versioned, in-place schema upgrade.

We use a small migration runner rather than Alembic: the schema is a few tables, the
programs must start fast (Alembic's import alone costs more than our CLI budget), and
every upgrade step has to run unattended from a daemon or ``etrnctl`` on SQLite and
PostgreSQL alike. A fresh index is created from the current tables and stamped with
``SCHEMA_VERSION``; an older one runs the steps in ``UPGRADES`` one transaction each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

from etrn_ext.core.errors import SchemaVersionError
from etrn_ext.index.engine import WRITE_LOCK

SCHEMA_VERSION: Final = 3

# The PostgreSQL advisory lock every process takes to create or upgrade the schema
# (any fixed number; this one spells "etrn").
SCHEMA_LOCK_KEY: Final = 0x6574726E

# Pending rows are selected with this literal condition everywhere, so that the
# partial index below matches the queries (SQLite cannot match bound parameters).
PENDING_CONDITION: Final = text("state IN ('held', 'flushing')")

_ROW_ID = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

schema_info = Table(
    "etrn_schema",
    metadata,
    Column("version", Integer, nullable=False),
)

domains = Table(
    "etrn_domains",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("include_subdomains", Boolean, nullable=False),
    Column("allow", JSON, nullable=False),
    Column("quota_messages", BigInteger),
    Column("quota_bytes", BigInteger),
    Column("contacts", JSON, nullable=False),
    Column("note", Text, nullable=False),
    Column("expected_outage_seconds", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

held = Table(
    "etrn_held",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("queue_id", String(32), nullable=False),
    Column("node", String(253), nullable=False),
    Column("recipient", String(512), nullable=False),
    Column("domain", String(253), nullable=False),
    Column("sender", String(512), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("arrival_time", Float, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    # 1 on one pending row per message and domain (the smallest recipient): summing it
    # counts messages, and summing size times it counts bytes once per message, so
    # per-domain totals need no per-message grouping (see core.rules.message_leads).
    Column("counts_message", Integer, nullable=False, server_default=text("1")),
    # queue_id first: "show QUEUE_ID" looks messages up across relays of a shared index.
    UniqueConstraint("queue_id", "node", "recipient", name="uq_etrn_held_recipient"),
)

# Covers the per-domain summary, the report and held_for() over pending rows only. Plain
# DDL, the same on SQLite and PostgreSQL: declaring it with dialect keywords would import
# the PostgreSQL dialect (and asyncio) into every etrnctl start.
PENDING_INDEX_DDL: Final = text(
    "CREATE INDEX IF NOT EXISTS ix_etrn_held_pending ON etrn_held "
    "(domain, node, queue_id, arrival_time, size, counts_message) "
    "WHERE state IN ('held', 'flushing')"
)

events = Table(
    "etrn_events",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("node", String(253), nullable=False),
    Column("domain", String(253)),
    Column("actor", String(512), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_etrn_events_domain_at", "domain", "at"),
)

# The report's "last ETRN / last flush per domain": the newest event of one kind per domain.
events_by_kind = Index("ix_etrn_events_kind_domain_at", events.c.kind, events.c.domain, events.c.at)

# The last notice of each kind sent about a domain, so that notify does not repeat itself.
notices = Table(
    "etrn_notices",
    metadata,
    Column("domain", String(253), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("sent_at", Float, nullable=False),
    # The newest arrival among the mail the notice told about: a new notice is due only
    # for mail that is all newer than that.
    Column("covers_until", Float, nullable=False),
    Column("recipients", JSON, nullable=False),
    Column("detail", JSON, nullable=False),
)

# Small per-relay facts that must survive between runs (e.g. how far sync read the mail log).
state = Table(
    "etrn_state",
    metadata,
    Column("node", String(253), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
)

# On the site: what each relay last said to etrnctl trigger (schema version 2).
triggers = Table(
    "etrn_triggers",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("node", String(253), nullable=False),
    Column("target", String(256), nullable=False),
    Column("relay", String(300), nullable=False),
    Column("address", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("code", Integer),
    Column("reply", Text, nullable=False),
    Column("pending_messages", Integer),
    Column("attempts", Integer, nullable=False),
    Column("encrypted", Boolean, nullable=False),
    Index("ix_etrn_triggers_pair", "node", "target", "relay"),
)

Upgrade = Callable[[Connection], None]


def _add_triggers(connection: Connection) -> None:
    """Version 2: the site's trigger history."""
    triggers.create(connection, checkfirst=True)


def _add_reporting(connection: Connection) -> None:
    """Version 3: the message-lead column, the notices table and the events index."""
    held_columns = {column["name"] for column in inspect(connection).get_columns(held.name)}
    if "counts_message" not in held_columns:
        connection.execute(
            text("ALTER TABLE etrn_held ADD COLUMN counts_message INTEGER NOT NULL DEFAULT 1")
        )
    # Mark every pending row but the smallest recipient of its message and domain, as
    # sync and the hooks write them from now on.
    connection.execute(
        text(
            "UPDATE etrn_held SET counts_message = 0 "
            "WHERE state IN ('held', 'flushing') AND recipient > ("
            "SELECT min(lead.recipient) FROM etrn_held lead "
            "WHERE lead.queue_id = etrn_held.queue_id AND lead.node = etrn_held.node "
            "AND lead.domain = etrn_held.domain AND lead.state IN ('held', 'flushing'))"
        )
    )
    connection.execute(text("DROP INDEX IF EXISTS ix_etrn_held_pending"))
    connection.execute(PENDING_INDEX_DDL)
    notices.create(connection, checkfirst=True)
    events_by_kind.create(connection, checkfirst=True)


# UPGRADES[n] turns a version n-1 index into version n.
UPGRADES: Final[Mapping[int, Upgrade]] = {2: _add_triggers, 3: _add_reporting}


def current_version(connection: Connection) -> int | None:
    """The stamped schema version, or ``None`` for an empty database."""
    if not inspect(connection).has_table(schema_info.name):
        return None
    return connection.execute(select(schema_info.c.version)).scalar_one_or_none()


@contextmanager
def _schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the schema's write lock from its first statement.

    Daemons and etrnctl may open a new or old index at the same moment. Each must wait
    for the one creating or upgrading it and then read the version it left, so that
    no step runs twice: SQLite's BEGIN IMMEDIATE waits out the busy timeout for the
    write lock, PostgreSQL's transaction advisory lock waits for the other process.
    """
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_LOCK: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY}
                )
            yield connection


def ensure_schema(
    engine: Engine,
    target: int = SCHEMA_VERSION,
    upgrades: Mapping[int, Upgrade] = UPGRADES,
) -> int:
    """Create or upgrade the schema in place; returns the version found before (0 if none)."""
    with engine.connect() as connection:
        found = current_version(connection)
    if found == target:
        return found  # the usual case needs no write lock
    with _schema_transaction(engine) as connection:
        found = current_version(connection)
        if found is None:
            metadata.create_all(connection)
            connection.execute(PENDING_INDEX_DDL)
            connection.execute(schema_info.insert().values(version=target))
            return 0
    if found > target:
        raise SchemaVersionError(
            engine.url.render_as_string(hide_password=True),
            f"schema version {found} is newer than this etrn-ext understands ({target}); "
            "upgrade etrn-ext",
        )
    for version in range(found + 1, target + 1):
        with _schema_transaction(engine) as connection:
            # Another process may have run this step while we waited for the lock.
            if (current_version(connection) or 0) >= version:
                continue
            upgrades[version](connection)
            connection.execute(schema_info.update().values(version=version))
    return found
