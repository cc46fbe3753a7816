"""SMTP replies as the site's ETRN client gets them: bytes in, one clean line and a count out.

The relay's text ends up in logs, on terminals and in the history; it is decoded
leniently and stripped of control characters so a hostile relay cannot forge log lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from etrn_ext.core.trigger import EtrnReply

_ENHANCED_STATUS: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\s+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
MAX_TEXT: Final = 512


@dataclass(frozen=True, slots=True)
class SmtpAnswer:
    """One reply: its code and its text (continuation lines joined with spaces)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()

    @property
    def pending_messages(self) -> int | None:
        """The ``<n>`` of ``253 OK, <n> pending messages for node <x> started``."""
        if self.code != EtrnReply.PENDING_COUNT:
            return None
        match = re.search(r"\d+", _ENHANCED_STATUS.sub("", self.text, count=1))
        return int(match.group()) if match else None


def clean_text(text: str) -> str:
    """One printable line of at most ``MAX_TEXT`` characters."""
    joined = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return _CONTROL.sub("?", joined)[:MAX_TEXT]


def decode_reply(code: int, message: bytes | str) -> SmtpAnswer:
    """What ``smtplib`` returns, as text (UTF-8, undecodable bytes replaced)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return SmtpAnswer(code, clean_text(text))
