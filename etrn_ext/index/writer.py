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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from etrn_ext.core.errors import IndexUnavailableError
from etrn_ext.core.model import Event, HeldRecipient
from etrn_ext.index.store import IndexStore, event_values, held_values

log = logging.getLogger(__name__)

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

    def __init__(self, store: IndexStore, *, max_rows: int, queue_limit: int) -> None:
        self._store = store
        self._max_rows = max_rows
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_limit)
        self._thread = threading.Thread(target=self._run, name="etrn-index-writer", daemon=True)
        self.stats = WriterStats()

    def start(self) -> BatchWriter:
        self._thread.start()
        return self

    def submit_held(self, rows: Iterable[HeldRecipient]) -> bool:
        """Queue one message's held recipients; False if they had to be dropped."""
        return self._put(("held", [held_values(row) for row in rows]))

    def submit_event(self, event: Event) -> bool:
        """Queue one audit event; False if it had to be dropped."""
        return self._put(("event", [event_values(event)]))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before this call is committed (or failed)."""
        done = threading.Event()
        self._queue.put(done, timeout=timeout)
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)

    def _put(self, item: tuple[str, list[dict[str, Any]]]) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += len(item[1])
            log.warning(
                "index writer queue full: dropped %d row(s); run 'etrnctl sync'", len(item[1])
            )
            return False
        return True

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            rows = len(batch[0][1]) if isinstance(batch[0], tuple) else 0
            while rows < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                if isinstance(item, tuple):
                    rows += len(item[1])
            if not self._commit(batch):
                return

    def _commit(self, batch: list[Any]) -> bool:
        """Write the rows of ``batch``, then release waiters; False once stopped."""
        held_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        for item in batch:
            if isinstance(item, tuple):
                (held_rows if item[0] == "held" else event_rows).extend(item[1])
        if held_rows or event_rows:
            try:
                self._store.write_batch(held_rows, event_rows)
            except IndexUnavailableError as exc:
                lost = len(held_rows) + len(event_rows)
                self.stats.failed += lost
                log.error(
                    "index write failed, %d row(s) lost: %s; run 'etrnctl sync'", lost, exc.reason
                )
            else:
                self.stats.committed += len(held_rows) + len(event_rows)
                self.stats.transactions += 1
        running = True
        for item in batch:
            if isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                running = False
        return running
