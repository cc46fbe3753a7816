"""Sendmail's socketmap protocol, sans I/O: netstrings in, lookups out, replies back.

A request is the netstring ``<mapname> <key>``; the reply is the netstring ``OK <value>``,
``NOTFOUND ``, ``TEMP <text>`` or ``PERM <text>`` (Sendmail's op guide, "socket" maps).
Sendmail keeps one connection per process and sends many lookups over it. Lengths are
capped so that a broken peer cannot make the daemon buffer without bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from etrn_ext.wire.errors import ProtocolError

MAX_LENGTH: Final = 4096
MAX_DIGITS: Final = len(str(MAX_LENGTH))


@dataclass(frozen=True, slots=True)
class Lookup:
    """One socketmap lookup."""

    map_name: str
    key: str


class NetstringDecoder:
    """Incremental decoder with the same shape as the policy decoder."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def mid_block(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def requests(self) -> Iterator[Lookup]:
        while self._buffer:
            colon = self._buffer.find(b":", 0, MAX_DIGITS + 1)
            if colon < 0:
                if len(self._buffer) > MAX_DIGITS or not bytes(self._buffer).isdigit():
                    raise ProtocolError("not a netstring length")
                return
            digits = bytes(self._buffer[:colon])
            if not digits.isdigit():
                raise ProtocolError("not a netstring length")
            length = int(digits)
            if length > MAX_LENGTH:
                raise ProtocolError(f"netstring longer than {MAX_LENGTH} bytes")
            end = colon + 1 + length
            if len(self._buffer) < end + 1:
                return
            if self._buffer[end : end + 1] != b",":
                raise ProtocolError("netstring not ended by ','")
            payload = bytes(self._buffer[colon + 1 : end])
            del self._buffer[: end + 1]
            yield _lookup(payload)


def _lookup(payload: bytes) -> Lookup:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("lookup is not UTF-8 text") from exc
    map_name, space, key = text.partition(" ")
    if not space or not map_name:
        raise ProtocolError(f"not '<mapname> <key>': {text[:60]!r}")
    return Lookup(map_name, key)


def netstring(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"%d:%s," % (len(data), data)


def found(value: str) -> bytes:
    return netstring(f"OK {value}")


def not_found() -> bytes:
    return netstring("NOTFOUND ")
