"""Sizes and durations as admins type them (``500M``, ``5d``), and back for display.

Durations use Postfix's time units (s, m, h, d, w) so a value copied from main.cf
means the same here. Sizes use binary multiples (K = 1024), like ``du -h``.
"""

from __future__ import annotations

import re
from typing import Final

from etrn_ext.core.errors import InvalidInputError

_SIZE_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER_WITH_UNIT: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]?)\Z")


def _split(what: str, text: str, units: dict[str, int]) -> tuple[float, str]:
    """The number and its unit (lower case, ``""`` when none), the unit checked."""
    match = _NUMBER_WITH_UNIT.match(text.strip())
    if not match:
        raise InvalidInputError(
            what, text, f"expected a number with an optional unit ({units_hint(units)})"
        )
    number, unit = match.groups()
    if unit.lower() not in units:
        raise InvalidInputError(what, text, f"unknown unit {unit!r} ({units_hint(units)})")
    return float(number), unit.lower()


def units_hint(units: dict[str, int]) -> str:
    return ", ".join(unit for unit in units if unit)


def parse_size(text: str) -> int:
    """``500M`` -> 524288000; a bare number is bytes."""
    number, unit = _split("size", text, _SIZE_UNITS)
    return int(number * _SIZE_UNITS[unit])


def parse_duration(text: str, default_unit: str = "s") -> float:
    """``5d`` -> 432000.0 seconds; a bare number is in ``default_unit``.

    The MTAs' queue lifetimes take days without a unit (Postfix's
    ``maximal_queue_lifetime``, Sendmail's ``Timeout.queuereturn``): pass ``"d"``.
    """
    number, unit = _split("duration", text, _DURATION_UNITS)
    return number * _DURATION_UNITS[unit or default_unit]


QUEUE_LIFETIME_UNIT: Final = "d"


def format_size(size: float) -> str:
    """Short human size: ``4.2M``; sizes below 1 KiB are shown in bytes."""
    if size < 1024:
        return str(int(size))
    value = size / 1024
    for unit in "KMG":
        if value < 1024:
            return f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


_DURATION_STEPS: Final = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float) -> str:
    """Short human age: the largest unit and the next one down (``3d4h``, ``25m``, ``40s``)."""
    remaining = max(int(seconds), 0)
    for position, (unit, length) in enumerate(_DURATION_STEPS):
        if remaining >= length or unit == "s":
            count, rest = divmod(remaining, length)
            text = f"{count}{unit}"
            if position + 1 < len(_DURATION_STEPS):
                next_unit, next_length = _DURATION_STEPS[position + 1]
                if rest // next_length:
                    text += f"{rest // next_length}{next_unit}"
            return text
    raise AssertionError("the seconds step always matches")
