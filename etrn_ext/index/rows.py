"""Rows as the index stores them, without SQLAlchemy.

Kept apart from ``store`` so that code building rows (sync, the hooks) can be imported
without paying for SQLAlchemy: sync starts the MTA's queue listing first and opens the
index while the MTA works.
"""

from __future__ import annotations

from typing import NamedTuple

from etrn_ext.core.model import HeldRecipient


class HeldValues(NamedTuple):
    """One held recipient as the index stores it (column order of the upsert)."""

    queue_id: str
    node: str
    recipient: str
    domain: str
    sender: str
    size: int
    arrival_time: float
    first_seen: float
    last_seen: float
    state: str
    reason: str


HELD_COLUMNS = HeldValues._fields


def held_values(row: HeldRecipient) -> HeldValues:
    """A ``HeldRecipient`` in the index's column order (the writer's unit)."""
    return HeldValues(
        row.queue_id,
        row.node,
        row.recipient,
        row.domain,
        row.sender,
        row.size,
        row.arrival_time,
        row.first_seen,
        row.last_seen,
        row.state.value,
        row.reason,
    )
