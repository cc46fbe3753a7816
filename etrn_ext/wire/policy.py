"""The Postfix policy delegation protocol, sans I/O: attribute blocks in, actions out.

A request is ``name=value`` lines ended by an empty line (SMTPD_POLICY_README); the
reply is ``action=...`` and an empty line. The decoder is fed whatever bytes arrive and
hands back complete requests. Anything that is not a well-formed block within the
limits (no ``request=``, a line without ``=``, control characters, an over-long line or
block) raises ``ProtocolError``; the caller logs it and closes the connection. Memory
stays bounded by the block limit, and each byte is scanned a bounded number of times
however slowly it trickles in. Bytes that are not UTF-8 (8-bit envelope data Postfix
passes on from a client) become U+FFFD: such a request is still answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from etrn_ext.wire.errors import ProtocolError

MAX_LINE_BYTES: Final = 4096
MAX_BLOCK_BYTES: Final = 65536
EXPECTED_REQUEST: Final = "smtpd_access_policy"


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One policy request; attributes absent from the block are empty strings."""

    attributes: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.attributes.get(name, "")

    @property
    def protocol_state(self) -> str:
        return self.get("protocol_state").upper()

    @property
    def instance(self) -> str:
        return self.get("instance")

    @property
    def queue_id(self) -> str:
        return self.get("queue_id")

    @property
    def recipient(self) -> str:
        return self.get("recipient")

    @property
    def sender(self) -> str:
        return self.get("sender")

    @property
    def client_address(self) -> str:
        return self.get("client_address")

    @property
    def client_name(self) -> str:
        return self.get("client_name")

    @property
    def sasl_username(self) -> str:
        return self.get("sasl_username")

    @property
    def etrn_domain(self) -> str:
        return self.get("etrn_domain")

    @property
    def size(self) -> int:
        value = self.get("size")
        return int(value) if value.isdigit() else 0


_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _parse_block(block: bytes) -> PolicyRequest:
    """One block (its lines, without the ending empty line) as a request; whole-block checks
    first, so the per-line work is a split and a partition."""
    text = block.decode("utf-8", errors="replace")
    if _CONTROL.search(text):
        raise ProtocolError("control character in attribute")
    attributes: dict[str, str] = {}
    for line in text.split("\n"):
        name, equals, value = line.partition("=")
        if not equals or not name:
            raise ProtocolError(f"not a name=value line: {line[:60]!r}")
        attributes[name] = value
    request = attributes.get("request")
    if request is None:
        raise ProtocolError("block without request= attribute")
    if request != EXPECTED_REQUEST:
        raise ProtocolError(f"unknown request type {request[:60]!r}")
    return PolicyRequest(attributes)


class PolicyDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, then take the complete ``requests``.

    ``requests`` yields the complete blocks one by one and raises ``ProtocolError`` when
    it reaches garbage, so the requests before the garbage are still answered.
    """

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, max_block: int = MAX_BLOCK_BYTES) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        self._max_block = max_block
        self._scanned = 0  # bytes of the incomplete block already checked
        self._line_start = 0  # where its last, unfinished line starts

    @property
    def mid_block(self) -> bool:
        """True when a block has started but not ended (a peer closing now breaks protocol)."""
        return bool(self._buffer.strip(b"\r\n"))

    def feed(self, data: bytes) -> None:
        joint = len(self._buffer) - 1  # the last byte before ``data``: maybe half a CRLF
        self._buffer += data
        if b"\r" in data or (joint >= 0 and self._buffer[joint] == ord("\r")):
            start = max(joint, 0)
            self._buffer[start:] = self._buffer[start:].replace(b"\r\n", b"\n")
            self._scanned = min(self._scanned, start)

    def requests(self) -> Iterator[PolicyRequest]:
        while True:
            if self._buffer.startswith(b"\n"):  # empty lines between blocks
                del self._buffer[: len(self._buffer) - len(self._buffer.lstrip(b"\n"))]
                self._scanned = self._line_start = 0
            end = self._buffer.find(b"\n\n", max(self._scanned - 1, 0))
            if end < 0:
                self._check_incomplete()
                return
            block = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            self._scanned = self._line_start = 0
            self._check_limits(block)
            yield _parse_block(block)

    def _check_incomplete(self) -> None:
        """The limits on the block still arriving, checking only the bytes new since the
        last call: a peer sending one byte at a time costs no more than one sending all."""
        if len(self._buffer) > self._max_block:
            raise ProtocolError(f"request block larger than {self._max_block} bytes")
        position = self._scanned
        while (newline := self._buffer.find(b"\n", position)) >= 0:
            if newline - self._line_start > self._max_line:
                raise ProtocolError(f"line longer than {self._max_line} bytes")
            self._line_start = position = newline + 1
        if len(self._buffer) - self._line_start > self._max_line:
            raise ProtocolError(f"line longer than {self._max_line} bytes")
        self._scanned = len(self._buffer)

    def _check_limits(self, data: bytes) -> None:
        if len(data) > self._max_block:
            raise ProtocolError(f"request block larger than {self._max_block} bytes")
        last_line = len(data) - data.rfind(b"\n") - 1
        if last_line > self._max_line or (
            len(data) > self._max_line and max(map(len, data.split(b"\n"))) > self._max_line
        ):
            raise ProtocolError(f"line longer than {self._max_line} bytes")


def format_action(action: str) -> bytes:
    """``action=...`` plus the empty line that ends the reply."""
    if "\n" in action or "\r" in action:
        raise ValueError("an action is one line")
    return f"action={action}\n\n".encode()
