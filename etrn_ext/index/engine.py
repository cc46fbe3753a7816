"""Engines for the index: SQLite (WAL, busy timeout) by default, any SQLAlchemy URL otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from etrn_ext.config import IndexSettings
from etrn_ext.core.errors import IndexUnavailableError

# Execution option: on SQLite, transactions of a connection so marked begin IMMEDIATE.
WRITE_LOCK: Final = "etrn_write_lock"


def make_engine(settings: IndexSettings) -> Engine:
    """Create the engine for ``settings.url``; SQLite files get WAL and a busy timeout.

    SQLite runs with ``synchronous=NORMAL``: in WAL mode that cannot corrupt the file,
    and the last transactions lost in a power cut are restored by ``etrnctl sync``
    because the index is only a view of the queue.
    """
    try:
        url = make_url(settings.url)
        if url.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise IndexUnavailableError(settings.url, str(exc)) from exc
    if url.database and url.database != ":memory:":
        directory = Path(url.database).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexUnavailableError(
                settings.url, f"cannot create {directory}: {exc.strerror}"
            ) from exc
    engine = create_engine(url, connect_args={"timeout": settings.busy_timeout_seconds})
    busy_ms = int(settings.busy_timeout_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (SQLAlchemy's
        # documented recipe), so that reads inside a transaction see one snapshot.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        # A larger page cache keeps the index's B-trees in memory across a batch
        # (the default 2 MB re-reads pages with pread on every upsert of a big sync).
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        # A transaction that reads before it writes must take the write lock first:
        # a deferred one whose snapshot another process wrote past fails at once with
        # "database is locked", whatever the busy timeout.
        write_lock = connection.get_execution_options().get(WRITE_LOCK, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write_lock else "BEGIN")

    return engine
