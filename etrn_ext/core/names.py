"""The only door from text to values that may reach an MTA command line.

Every domain name and queue id is parsed here into a value type before any adapter
sees it; adapters accept these types, never ``str``. The checks are deliberately
stricter than DNS allows: a name that could be read as an option (``-qfoo``), holds
shell or whitespace characters, or is not valid IDNA never gets past this module.

U-labels are encoded with the stdlib's IDNA 2003, except for the few characters that
IDNA 2008 encodes differently (``faß`` is not ``fass`` there), which are refused
rather than silently mapped. A-labels are checked with a plain punycode round trip,
so IDNA 2008 names such as ``xn--zca.de`` are accepted as given.
"""

from __future__ import annotations

import encodings.idna
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from etrn_ext.core.errors import InvalidDomainError, InvalidInputError, InvalidQueueIdError

MAX_DOMAIN_LENGTH: Final = 253
MAX_LABEL_LENGTH: Final = 63
_LDH_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
_ACE_PREFIX: Final = "xn--"
# The full stops IDNA separates labels at (RFC 3490 3.1): ASCII's and three wide ones.
_FULL_STOPS: Final = ".\u3002\uff0e\uff61"
_AS_ASCII_FULL_STOPS: Final = str.maketrans(_FULL_STOPS[1:], "...")
# Characters IDNA 2003 maps away (to "ss", to sigma, to nothing) where IDNA 2008 keeps
# them: the same U-label would name one domain here and another in a newer resolver.
_IDNA_DEVIATIONS: Final = {
    "\u00df": "sharp s",
    "\u1e9e": "capital sharp s",
    "\u03c2": "final sigma",
    "\u200d": "zero width joiner",
    "\u200c": "zero width non-joiner",
}


@dataclass(frozen=True, slots=True, order=True)
class DomainName:
    """A validated domain: IDNA A-labels, lower case, no trailing dot."""

    ascii: str

    def __str__(self) -> str:
        return self.ascii

    @property
    def unicode(self) -> str:
        """The name as people write it (U-labels), for display only."""
        return ".".join(
            _u_label(label) if label.startswith(_ACE_PREFIX) else label
            for label in self.ascii.split(".")
        )

    def parents(self) -> Iterator[DomainName]:
        """Yield the strict parent domains, nearest first (``a.b.c`` -> ``b.c``, ``c``)."""
        labels = self.ascii.split(".")
        for start in range(1, len(labels)):
            yield DomainName(".".join(labels[start:]))

    def is_within(self, other: DomainName) -> bool:
        """True for ``other`` itself and any of its subdomains."""
        return self.ascii == other.ascii or self.ascii.endswith("." + other.ascii)


def _has_unsafe_character(text: str) -> str | None:
    for char in text:
        if char.isspace():
            return "contains whitespace"
        if unicodedata.category(char).startswith("C"):
            return "contains a control or format character"
    return None


def _idna_deviation(text: str) -> str | None:
    for char in text:
        if char in _IDNA_DEVIATIONS:
            return (
                f"holds {_IDNA_DEVIATIONS[char]} (U+{ord(char):04X}), which IDNA 2003 and "
                "IDNA 2008 encode differently; give the name as A-labels (xn--)"
            )
    return None


def _u_label(a_label: str) -> str:
    """Decode an ``xn--`` label with plain punycode (IDNA 2003's ToUnicode maps ß to ss)."""
    return a_label[len(_ACE_PREFIX) :].encode("ascii").decode("punycode")


def _a_label_problem(a_label: str) -> str | None:
    """Why a lower-case ``xn--`` label is not the A-label of a U-label we could accept."""
    try:
        u_label = _u_label(a_label)
        round_trip = _ACE_PREFIX + u_label.encode("punycode").decode("ascii")
    except UnicodeError as exc:
        return str(exc)
    if round_trip != a_label:
        return "punycode does not round-trip"
    if u_label.isascii():
        return "encodes no non-ASCII character"
    if any(char in _FULL_STOPS for char in u_label):
        return "encodes a full stop"
    if unicodedata.normalize("NFC", u_label) != u_label:
        return "encodes text not in Unicode normal form C"
    return _has_unsafe_character(u_label)


def _to_a_label(label: str, whole: str) -> str:
    if label.isascii():
        lowered = label.lower()
        problem = _a_label_problem(lowered) if lowered.startswith(_ACE_PREFIX) else None
        if problem:
            raise InvalidDomainError(whole, f"label {label!r} is not valid IDNA ({problem})")
        return lowered
    try:
        return encodings.idna.ToASCII(label).decode("ascii").lower()
    except UnicodeError as exc:
        raise InvalidDomainError(whole, f"label {label!r} cannot be IDNA-encoded ({exc})") from exc


def parse_domain(text: str) -> DomainName:
    """Validate and normalise a domain name (IDNA, lower case, one trailing dot allowed)."""
    if not isinstance(text, str):
        raise InvalidDomainError(repr(text), "not text")
    if not text:
        raise InvalidDomainError(text, "empty")
    if text.startswith("-"):
        raise InvalidDomainError(text, "must not start with '-'")
    problem = _idna_deviation(text) or _has_unsafe_character(text)
    if problem:
        raise InvalidDomainError(text, problem)
    dotted = text.translate(_AS_ASCII_FULL_STOPS)
    name = dotted[:-1] if dotted.endswith(".") else dotted
    if len(name) > 4 * MAX_DOMAIN_LENGTH:
        raise InvalidDomainError(text[:40] + "...", f"longer than {MAX_DOMAIN_LENGTH} characters")
    labels = name.split(".")
    if any(not label for label in labels):
        raise InvalidDomainError(text, "empty label")
    a_labels = [_to_a_label(label, text) for label in labels]
    for label in a_labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidDomainError(text, f"label longer than {MAX_LABEL_LENGTH} characters")
        if not _LDH_LABEL.match(label):
            raise InvalidDomainError(
                text, f"label {label!r} may hold only letters, digits and inner hyphens"
            )
    ascii_name = ".".join(a_labels)
    if len(ascii_name) > MAX_DOMAIN_LENGTH:
        raise InvalidDomainError(text, f"longer than {MAX_DOMAIN_LENGTH} characters")
    if a_labels[-1].isdigit():
        raise InvalidDomainError(text, "top-level label is numeric (an address is not a domain)")
    return DomainName(ascii_name)


def domain_of_address(address: str) -> DomainName:
    """The domain part of ``local@domain`` (the last ``@`` decides, as in RFC 5321)."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise InvalidDomainError(address, "not an address of the form local@domain")
    return parse_domain(domain)


# --- queue ids ----------------------------------------------------------------------------

_POSTFIX_SHORT: Final = re.compile(r"[0-9A-F]{6,16}\Z")
# Long ids (mail_queue.h): seconds and microseconds in base 52 (digits and consonants),
# at least 10 characters, the separator 'z', then the inode number in base 51 (no 'z').
_BASE51: Final = "0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy"
_POSTFIX_LONG: Final = re.compile(rf"[{_BASE51}z]{{10,}}z[{_BASE51}]+\Z")
# Sendmail 8.12+: YMDhms and a two-character sequence in base 60, then the pid.
_SENDMAIL: Final = re.compile(r"[0-9A-Za-x]{8}[0-9]{5,10}\Z")


@dataclass(frozen=True, slots=True, order=True)
class QueueId:
    """A validated MTA queue id; ``syntax`` says which MTA's format it matched."""

    value: str
    syntax: str

    def __str__(self) -> str:
        return self.value


def parse_queue_id(text: str) -> QueueId:
    """Accept Postfix short, Postfix long and Sendmail queue ids; refuse anything else."""
    if not isinstance(text, str) or not text:
        raise InvalidQueueIdError(repr(text), "empty")
    if text.startswith("-"):
        raise InvalidQueueIdError(text, "must not start with '-'")
    for syntax, pattern in (
        ("postfix-short", _POSTFIX_SHORT),
        ("postfix-long", _POSTFIX_LONG),
        ("sendmail", _SENDMAIL),
    ):
        if pattern.match(text):
            return QueueId(text, syntax)
    raise InvalidQueueIdError(text, "not a Postfix or Sendmail queue id")


# --- other names that end up in the index --------------------------------------------------

MAX_LOCAL_PART: Final = 64
_LOCAL_PART_FORBIDDEN: Final = frozenset('<>()[]\\,;:"@')


def parse_mailbox(text: str) -> str:
    """Validate a plain ``local@domain`` contact address; returns it with the domain normalised."""
    local, at, _domain = text.rpartition("@")
    if not at or not local:
        raise InvalidInputError("address", text, "expected local@domain")
    if text.startswith("-"):
        raise InvalidInputError("address", text, "must not start with '-'")
    unsafe = _has_unsafe_character(text)
    if unsafe:
        raise InvalidInputError("address", text, unsafe)
    if len(local) > MAX_LOCAL_PART or _LOCAL_PART_FORBIDDEN.intersection(local):
        raise InvalidInputError("address", text, "unsupported local part")
    return f"{local}@{domain_of_address(text)}"


MAX_SASL_NAME: Final = 255


def parse_sasl_username(text: str) -> str:
    """A SASL login name as Postfix reports it in ``sasl_username``."""
    if not text or len(text) > MAX_SASL_NAME:
        raise InvalidInputError("SASL user name", text, f"must be 1 to {MAX_SASL_NAME} characters")
    unsafe = _has_unsafe_character(text)
    if unsafe:
        raise InvalidInputError("SASL user name", text, unsafe)
    return text


def domain_part(address: str) -> str:
    """The domain of a mail address as text, lower case (not checked: a lookup key)."""
    return address.rpartition("@")[2].lower()
