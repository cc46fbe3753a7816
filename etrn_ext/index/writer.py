"""The batched writer: the one thread through which daemons write to the index.

Callers (milter callbacks, policy requests) hand over rows and return at once; the
writer commits whatever has piled up in one transaction. Under load that is group
commit for free; when idle a row is written within milliseconds. The thread is
created by Python (not by libmilter), which is the only safe place to open and close
SQLite connections (see the research notes on the pymilter segfault).

If the database is down or the queue is full, rows are dropped and counted, never
waited for: mail must not wait for the index, and ``etrnctl sync`` restores it.
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
        # SimpleQueue is lock-free on the put side; the limit is checked with qsize().
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="etrn-index-writer", daemon=True)
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
        """Commit what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _put(self, rows: _Rows) -> bool:
        if self._queue.qsize() >= self._queue_limit:
            self.stats.dropped += len(rows)
            log.warning("index writer queue full: dropped %d row(s); run 'etrnctl sync'", len(rows))
            return False
        self._queue.put(rows)
        return True

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
        merged = _Rows()
        for item in batch:
            if isinstance(item, _Rows):
                merged.held.extend(item.held)
                merged.events.extend(item.events)
        if merged:
            try:
                self._store.write_batch(merged.held, merged.events)
            except IndexUnavailableError as exc:
                self.stats.failed += len(merged)
                log.error(
                    "index write failed, %d row(s) lost: %s; run 'etrnctl sync'",
                    len(merged),
                    exc.reason,
                )
            else:
                self.stats.committed += len(merged)
                self.stats.transactions += 1
        for item in batch:
            if isinstance(item, threading.Event):
                item.set()
        return not any(item is _STOP for item in batch)
