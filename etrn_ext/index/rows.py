"""Rows as the index stores them, without SQLAlchemy.

Kept apart from ``store`` so that code building rows (sync, the hooks) can be imported
without paying for SQLAlchemy: sync starts the MTA's queue listing first and opens the
index while the MTA works.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from etrn_ext.core.model import PENDING_STATES, HeldRecipient
from etrn_ext.core.rules import message_leads


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
    counts_message: int


HELD_COLUMNS = HeldValues._fields


def held_values(rows: Iterable[HeldRecipient]) -> list[HeldValues]:
    """Whole messages' ``HeldRecipient`` rows in the index's column order (the writer's unit).

    The rows must hold every pending recipient of their messages: one per message and
    domain is marked as the one that counts the message (``core.rules.message_leads``).
    """
    rows = list(rows)
    leads = message_leads(
        ((row.node, row.queue_id, row.domain), row.recipient)
        for row in rows
        if row.state in PENDING_STATES
    )
    return [
        HeldValues(
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
            int(((row.node, row.queue_id, row.domain), row.recipient) in leads),
        )
        for row in rows
    ]
