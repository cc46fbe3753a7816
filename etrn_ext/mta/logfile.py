"""Reading an MTA's log incrementally: from where the last read stopped, across rotation."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO, Final

from etrn_ext.core.model import DeliveryRecord
from etrn_ext.mta.base import LogPosition

# Compressing a rotated log writes a new file, so none of these can be the file we were
# reading; one could only match its inode by the number being reused.
COMPRESSED_SUFFIXES: Final = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")


def read_log_records(
    path: str,
    since: LogPosition | None,
    parse_line: Callable[[str], list[DeliveryRecord]],
) -> tuple[list[DeliveryRecord], LogPosition | None]:
    """Records of the complete lines logged after ``since``.

    When the log was rotated since, the rest of the old file (found by its inode) is read
    before the new log, from its start; a truncated log is read anew.
    """
    records: list[DeliveryRecord] = []
    position = since
    if since is not None:
        earlier = _open_by_inode(_names_of_the_log(path), since.inode)
        if earlier is not None:
            with earlier:
                records, position = _read_complete_lines(earlier, since.offset, parse_line)
            if earlier.name == path:
                return records, position
    try:
        with open(path, "rb") as log:
            newer, position = _read_complete_lines(log, 0, parse_line)
    except FileNotFoundError:
        return records, position
    return records + newer, position


def _names_of_the_log(path: str) -> Iterator[str]:
    """The log, then where rotation may have moved it: ``path.1`` first, then its siblings."""
    yield path
    yield f"{path}.1"
    directory, name = os.path.split(path)
    for sibling in sorted(os.listdir(directory or ".")):
        if (
            sibling.startswith(name)
            and sibling not in (name, f"{name}.1")
            and not sibling.endswith(COMPRESSED_SUFFIXES)
        ):
            yield os.path.join(directory, sibling)


def _open_by_inode(names: Iterator[str], inode: int) -> BinaryIO | None:
    """The first of ``names`` that is the file with ``inode``, open for reading."""
    for name in names:
        try:
            candidate = open(name, "rb")  # noqa: SIM115 - returned open, or closed here
        except FileNotFoundError:
            continue
        if os.fstat(candidate.fileno()).st_ino == inode:
            return candidate
        candidate.close()
    return None


def _read_complete_lines(
    log: BinaryIO, offset: int, parse_line: Callable[[str], list[DeliveryRecord]]
) -> tuple[list[DeliveryRecord], LogPosition]:
    """Records from ``offset`` (from the start if the file is now shorter) to the last newline.

    A last line without its newline is still being written: it is left for the next read.
    """
    status = os.fstat(log.fileno())
    if offset > status.st_size:
        offset = 0
    log.seek(offset)
    records = []
    for line in log:
        if not line.endswith(b"\n"):
            break
        offset += len(line)
        records += parse_line(line.decode("utf-8", errors="replace"))
    return records, LogPosition(status.st_ino, offset)
