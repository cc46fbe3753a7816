"""Output: aligned tables and ``key: value`` blocks for people, JSON for scripts."""

from __future__ import annotations

import json
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


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False))


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[str] = ()
) -> str:
    """Columns padded to their widest cell; columns named in ``right`` are right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

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


def emit_fields(fields: Mapping[str, object]) -> None:
    """``key: value`` lines with the values aligned, like ``postconf``-style reports."""
    width = max((len(key) for key in fields), default=0) + 1
    for key, value in fields.items():
        click.echo(f"{(key + ':').ljust(width)} {value}")
