"""The batched writer: the one thread through which daemons write to the index.

Callers (milter callbacks, policy requests) hand over rows and return at once; the
writer commits whatever has piled up in one transaction. Under load that is group
commit for free; when idle a row is written within milliseconds. The thread is
created by Python (not by libmilter), which is the only safe place to open and close
SQLite connections (see the research notes on the pymilter segfault).

If the database is down or the queue is full, rows are dropped and counted, never
waited for: mail must not wait for the index, and ``etrnctl sync`` restores it. A
batch that a bad row fails is written again message by message, so that only that
message is lost; no error ends the thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from etrn_ext.core.errors import IndexUnavailableError
from etrn_ext.core.model import Event, HeldRecipient
from etrn_ext.index.rows import HeldValues, held_values
from etrn_ext.index.store import IndexStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Rows:
    held: list[HeldValues] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.held) + len(self.events)


_STOP: Final = object()


@dataclass(slots=True)
class WriterStats:
    """Counters for logs and tests: what was committed, dropped or lost to errors."""

    committed: int = 0
    dropped: int = 0
    failed: int = 0
    transactions: int = 0


class BatchWriter:
    """Queue rows from any thread; one writer thread commits them in batches."""

    def __init__(
        self, store: IndexStore, *, max_rows: int, queue_limit: int, max_delay: float = 0.0
    ) -> None:
        self._store = store
        self._max_rows = max_rows
        self._max_delay = max_delay
        self._queue_limit = queue_limit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="etrn-index-writer", daemon=True)
        # Guards the counters and makes "closing" and the queue's last item (_STOP) agree:
        # no row is queued behind _STOP, where it would be lost without a word.
        self._lock = threading.Lock()
        self._closing = False
        self._rows_waiting = 0
        self.stats = WriterStats()

    def start(self) -> BatchWriter:
        self._thread.start()
        return self

    def submit_held(self, rows: Iterable[HeldRecipient]) -> bool:
        """Queue one message's held recipients (all of them); False if they had to be dropped."""
        return self._put(_Rows(held=held_values(rows)))

    def submit_event(self, event: Event) -> bool:
        """Queue one audit event; False if it had to be dropped."""
        return self._put(_Rows(events=[event.fields()]))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before this call is committed (or failed)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, then stop the thread; rows submitted from now on are dropped."""
        with self._lock:
            if not self._closing and self._thread.is_alive():
                self._queue.put(_STOP)
            self._closing = True
        if not self._thread.is_alive():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "index writer did not finish within %gs: %d row(s) left unwritten; "
                "run 'etrnctl sync'",
                timeout,
                self._rows_waiting,
            )

    def _refusal(self) -> str | None:
        """Why a row cannot be queued now (caller holds the lock), or None."""
        if self._closing:
            return "closing"
        if self._thread.ident is not None and not self._thread.is_alive():
            return "stopped"
        if self._queue.qsize() >= self._queue_limit:
            return "queue full"
        return None

    def _put(self, rows: _Rows) -> bool:
        with self._lock:
            refusal = self._refusal()
            if refusal is None:
                self._queue.put(rows)
                self._rows_waiting += len(rows)
                return True
            self.stats.dropped += len(rows)
        log.warning("index writer %s: dropped %d row(s); run 'etrnctl sync'", refusal, len(rows))
        return False

    def _run(self) -> None:
        running = True
        while running:
            batch = [self._queue.get()]
            rows = len(batch[0]) if isinstance(batch[0], _Rows) else 0
            if rows and self._max_delay and self._queue.qsize() < self._max_rows:
                # Let more rows pile up (group commit): one transaction then carries
                # hundreds of messages, and sleeping (rather than waiting on the queue)
                # spares a thread wake-up per message. Nobody waits for this. With a
                # full batch already waiting, sleeping would only cap the rate.
                time.sleep(self._max_delay)
            while rows < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                if isinstance(item, _Rows):
                    rows += len(item)
            running = self._commit(batch)

    def _commit(self, batch: list[Any]) -> bool:
        """Write the rows of ``batch``, then release waiters; False once told to stop."""
        messages = [item for item in batch if isinstance(item, _Rows)]
        self._write(messages)
        with self._lock:
            self._rows_waiting -= sum(len(message) for message in messages)
        for item in batch:
            if isinstance(item, threading.Event):
                item.set()
        return not any(item is _STOP for item in batch)

    def _write(self, messages: list[_Rows]) -> None:
        """Commit ``messages`` in one transaction; when a bad row fails it, one by one.

        The thread must outlive any error: a dead writer would leave the daemon
        accepting rows that nobody writes. When the index itself is unavailable,
        retrying message by message would only wait longer, so those rows are lost.
        """
        rows = _merged(messages)
        try:
            self._write_rows(rows)
        except IndexUnavailableError as exc:
            self._lose(rows, exc.reason)
            return
        except Exception as exc:  # noqa: BLE001 - a bad row must not stop the writer
            if len(messages) == 1:
                self._lose(rows, _first_line(exc))
                return
            log.error(
                "index write of %d row(s) failed (%s); retrying message by message",
                len(rows),
                _first_line(exc),
            )
        else:
            return
        for position, message in enumerate(messages):
            try:
                self._write_rows(message)
            except IndexUnavailableError as exc:
                self._lose(_merged(messages[position:]), exc.reason)
                return
            except Exception as exc:  # noqa: BLE001 - only this message's rows are bad
                self._lose(message, _first_line(exc))

    def _write_rows(self, rows: _Rows) -> None:
        if rows:
            self._store.write_batch(rows.held, rows.events)
            self.stats.committed += len(rows)
            self.stats.transactions += 1

    def _lose(self, rows: _Rows, reason: str) -> None:
        self.stats.failed += len(rows)
        log.error("index write failed, %d row(s) lost: %s; run 'etrnctl sync'", len(rows), reason)


def _merged(messages: list[_Rows]) -> _Rows:
    merged = _Rows()
    for message in messages:
        merged.held.extend(message.held)
        merged.events.extend(message.events)
    return merged


def _first_line(error: Exception) -> str:
    """The error's class and first line (SQLAlchemy appends the statement and its values)."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
