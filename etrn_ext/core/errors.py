"""One error tree for the whole program; each error carries its evidence as fields.

Front ends map these classes to exit codes and replies; nothing below them formats
messages for a particular front end.
"""

from __future__ import annotations

from collections.abc import Sequence


class EtrnExtError(Exception):
    """Base class: every failure we expect and can explain."""


class InvalidInputError(EtrnExtError, ValueError):
    """A value from outside (command line, config, protocol) is malformed."""

    def __init__(self, what: str, value: str, reason: str) -> None:
        self.what = what
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {what} {value!r}: {reason}")


class InvalidDomainError(InvalidInputError):
    """Not a domain name we would ever put on a command line."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__("domain name", value, reason)


class InvalidQueueIdError(InvalidInputError):
    """Not a Postfix (short or long) or Sendmail queue id."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__("queue id", value, reason)


class ConfigError(EtrnExtError):
    """The configuration file is unreadable, or a key or value in it is wrong."""

    def __init__(self, key: str, reason: str, path: str | None = None) -> None:
        self.key = key
        self.reason = reason
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {reason}" if key else f"{where}{reason}")


class UnknownDomainError(EtrnExtError):
    """The domain is not in the registry of intermittent domains."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        super().__init__(f"{domain}: not a registered intermittent domain")


class UnknownMessageError(EtrnExtError):
    """No message with this queue id is in the index (or in the queue)."""

    def __init__(self, queue_id: str, where: str = "index") -> None:
        self.queue_id = queue_id
        hint = " (try 'etrnctl sync')" if where == "index" else ""
        super().__init__(f"{queue_id}: no such message in the {where}{hint}")


class DomainExistsError(EtrnExtError):
    """``domain add`` for a domain that is already registered."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        super().__init__(f"{domain}: already registered (use 'etrnctl domain set' to change it)")


class DomainInUseError(EtrnExtError):
    """Removing a domain that still has held mail in the index."""

    def __init__(self, domain: str, pending: int) -> None:
        self.domain = domain
        self.pending = pending
        super().__init__(
            f"{domain}: {pending} held recipient(s) in the index; "
            "flush them first or use --force (the mail stays in the MTA queue)"
        )


class IndexUnavailableError(EtrnExtError):
    """The SQL index cannot be opened, read or written."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"index {url}: {reason}")


class SchemaVersionError(IndexUnavailableError):
    """The index was written by a newer etrn-ext than this one."""


class MtaCommandError(EtrnExtError):
    """An MTA command could not be run or failed."""

    def __init__(
        self,
        argv: Sequence[str],
        reason: str,
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        self.argv = tuple(argv)
        self.reason = reason
        self.returncode = returncode
        self.stderr = stderr
        detail = f" (exit {returncode})" if returncode is not None else ""
        super().__init__(f"{argv[0] if argv else '?'}: {reason}{detail}")


class LocalMtaUnavailableError(EtrnExtError):
    """``trigger --wait-local``: the local MTA did not accept connections in time."""

    def __init__(self, address: str, waited_seconds: float) -> None:
        self.address = address
        self.waited_seconds = waited_seconds
        super().__init__(
            f"the local MTA at {address} did not greet within {waited_seconds:g}s; "
            "not asking the relays for mail it could not accept"
        )


class MailSubmissionError(EtrnExtError):
    """The submission host could not be reached or would not take a message."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        super().__init__(f"cannot send mail through {host}:{port}: {reason}")


class OutputFileError(EtrnExtError):
    """An output file cannot be written; the old one, if any, is left as it was."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}")
