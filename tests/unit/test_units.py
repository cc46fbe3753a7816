"""Sizes and durations as admins type them."""

from __future__ import annotations

import pytest

from etrn_ext.core.errors import InvalidInputError
from etrn_ext.core.units import (
    QUEUE_LIFETIME_UNIT,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("2048", 2048), ("1K", 1024), ("500M", 500 * 1024**2), ("1.5g", 1536 * 1024**2)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("5m", 300), ("12h", 43200), ("5d", 432000), ("1w", 604800)]
)
def test_parse_duration_uses_postfix_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_queue_lifetime_without_a_unit_is_in_days() -> None:
    # maximal_queue_lifetime = 5 and Timeout.queuereturn=5 both mean five days
    assert parse_duration("5", QUEUE_LIFETIME_UNIT) == 5 * 86400
    assert parse_duration("12h", QUEUE_LIFETIME_UNIT) == 12 * 3600


@pytest.mark.parametrize("text", ["", "M", "-1", "5x", "1e9", "5 days"])
def test_bad_sizes_and_durations(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_size(text)
    with pytest.raises(InvalidInputError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (61, "1m1s"),
        (3600, "1h"),
        (86401, "1d"),
        (90061, "1d1h"),
        (8 * 86400, "1w1d"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0"), (1023, "1023"), (1024, "1.0K"), (4404019, "4.2M"), (3 * 1024**4, "3.0T")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
