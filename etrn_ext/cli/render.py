"""Output: aligned tables and ``key: value`` blocks for people, JSON for scripts; and the
parameter types the commands share."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import click


def iso_time(epoch: float | None) -> str | None:
    """UTC ISO 8601 with a Z, the form scripts parse without guessing the time zone."""
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def local_time(epoch: float | None) -> str:
    """Local time the way mailq shows it, for people."""
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def local_time_with_zone(epoch: float) -> str:
    """``local_time`` and the zone's name: once at the top says which zone all times are in."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False))


ELLIPSIS = "..."


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - len(ELLIPSIS), 1)] + ELLIPSIS


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    right: Sequence[str] = (),
    width: int | None = None,
    shrink: str | None = None,
) -> str:
    """Columns padded to their widest cell; columns named in ``right`` are right-aligned.

    With ``width``, the cells of the ``shrink`` column are shortened (never below its
    header) so that lines fit, e.g. 80 columns for a cron mail.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(wide, len(cell)) for wide, cell in zip(widths, row, strict=True)]
    if width is not None and shrink is not None:
        column = list(headers).index(shrink)
        others = sum(widths) - widths[column] + 2 * (len(headers) - 1)
        widths[column] = max(min(widths[column], width - others), len(shrink))
        for row in cells:
            row[column] = _shorten(row[column], widths[column])

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if header in right else cell.ljust(width)
            for header, cell, width in zip(headers, row, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def emit_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[str] = ()
) -> None:
    click.echo(table(headers, rows, right=right))


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` all at once: a reader sees the old file or the new one,
    never half of it, and a failure leaves the old one as it was."""
    import os
    import tempfile

    from etrn_ext.core.errors import OutputFileError

    directory = os.path.dirname(os.path.abspath(path))
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise OutputFileError(path, (exc.strerror or str(exc)).lower()) from exc
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        # Keep the mode of the file replaced; a new one is readable like any report.
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        os.unlink(temporary)
        raise OutputFileError(path, (exc.strerror or str(exc)).lower()) from exc


def emit_fields(fields: Mapping[str, object]) -> None:
    """``key: value`` lines with the values aligned, like ``postconf``-style reports."""
    width = max((len(key) for key in fields), default=0) + 1
    for key, value in fields.items():
        click.echo(f"{(key + ':').ljust(width)} {value}")


class Seconds(click.FloatRange):
    """A positive, finite number of seconds (FloatRange alone lets nan and inf through)."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return seconds
