"""The one small interface every MTA adapter implements.

The MTA's queue is the source of truth; adapters read it and ask the MTA, through its
own commands, to deliver. They never touch queue files. Arguments are validated
value types (``DomainName``, ``QueueId``), never free text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from etrn_ext.core.model import DeliveryRecord, QueueEntry
from etrn_ext.core.names import DomainName, QueueId


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where reading of the mail log stopped: the file (by inode) and the offset in it."""

    inode: int
    offset: int


class MtaAdapter(Protocol):
    """What etrn-ext needs from an MTA."""

    kind: str
    # What one flush delivers, in words for people: a whole queue file, so a message's
    # recipients in other domains go along ("Postfix flushes whole queue files").
    flush_granularity: str

    def list_queue(self) -> Iterator[QueueEntry]:
        """Start listing the queue now; yield one message at a time with its pending recipients.

        Starting at the call lets the MTA work while the caller opens the index.
        """
        ...

    def flush_domain(self, domain: DomainName) -> None:
        """Ask the MTA to deliver the mail it holds for ``domain`` now (asynchronous)."""
        ...

    def flush_ids(self, queue_ids: Sequence[QueueId]) -> None:
        """Ask the MTA to deliver exactly these messages now (asynchronous)."""
        ...

    def native_etrn_covers(self, entry: QueueEntry) -> bool:
        """Whether the MTA's own ETRN flush delivers this message; if not, the ETRN hook
        flushes it by queue id."""
        ...

    def queue_lifetime_seconds(self) -> float:
        """How long a message may wait before the MTA returns it to the sender."""
        ...

    def read_delivery_log(
        self, path: str, since: LogPosition | None
    ) -> tuple[list[DeliveryRecord], LogPosition | None]:
        """Final delivery statuses logged after ``since``, and where reading stopped."""
        ...
