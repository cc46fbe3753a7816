"""Reading an MTA's log incrementally: from where the last read stopped, across rotation."""

from __future__ import annotations

import os
from collections.abc import Callable

from etrn_ext.core.model import DeliveryRecord
from etrn_ext.mta.base import LogPosition


def read_log_records(
    path: str,
    since: LogPosition | None,
    parse_line: Callable[[str], list[DeliveryRecord]],
) -> tuple[list[DeliveryRecord], LogPosition | None]:
    """Records of the lines logged after ``since``; a rotated or truncated log is read anew."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            status = os.fstat(log.fileno())
            if since and since.inode == status.st_ino and since.offset <= status.st_size:
                log.seek(since.offset)
            records = [record for line in log for record in parse_line(line)]
            return records, LogPosition(status.st_ino, log.tell())
    except FileNotFoundError:
        return [], since
