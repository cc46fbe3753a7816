"""Sendmail adapter: reads the queue files, flushes exact queue ids with ``sendmail -qI``.

Sendmail's own ETRN and ``-qR`` match recipients by case-insensitive substring
(``site.test`` also flushes ``site.testing.org``), so a domain is flushed here by the
exact queue ids of its held mail, in one ``sendmail -qI<id> -qI<id>...`` call (the
ids are ORed); ``-qR@domain`` only when ``[mta] sendmail_flush = "substring"``.

The queue is read from the qf files (op.me appendix B), one file at a time, in the
main queue directory and every queue group's directory named in sendmail.cf (a
trailing ``*``, as in ``/var/spool/mqueue/q*``, stands for every matching directory); that
needs the rights of the queue's owner (root or smmsp). Facts relied on (research
notes, Sendmail 8.17): an ``M`` line right before an ``R`` line is that recipient's
status; delivered and bounced recipients disappear from the qf file; ``T`` is the
creation time; the size mailq shows is that of the df (body) file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from etrn_ext.config import MtaSettings
from etrn_ext.core.model import DeliveryRecord, Outcome, QueuedRecipient, QueueEntry
from etrn_ext.core.names import DomainName, QueueId
from etrn_ext.core.sendmail_setup import (
    etrn_pattern,
    etrn_runs,
    option_seconds,
    queue_directories,
)
from etrn_ext.core.units import QUEUE_LIFETIME_UNIT, parse_duration
from etrn_ext.mta.base import LogPosition
from etrn_ext.mta.logfile import read_log_records
from etrn_ext.mta.run import run_command

IDS_PER_CALL: Final = 500


def parse_qf(text: str, queue_id: str, queue_name: str, size: int) -> QueueEntry:
    """One qf file's envelope as a ``QueueEntry`` (pending recipients only).

    Lines end at newlines only, as Sendmail reads them (``str.splitlines`` would also
    split at form feeds or U+2028 inside a header), and the envelope ends at the first
    header: a header's text can never pass for a recipient. The ``M`` line before ``S``
    is the envelope's status (mailq's line), not the first recipient's.
    """
    arrival = 0.0
    sender = ""
    recipients = []
    status = ""
    for line in text.split("\n"):
        kind, value = line[:1], line[1:]
        if kind == "T" and value.isdigit():
            arrival = float(value)
        elif kind == "S":
            sender = value.strip().removeprefix("<").removesuffix(">")
            status = ""
        elif kind == "M":
            status = value
        elif kind == "R":
            address = value.split(":", 1)[-1].strip().removeprefix("<").removesuffix(">")
            recipients.append(QueuedRecipient(address, status))
            status = ""
        elif kind in ("H", "."):
            break
    return QueueEntry(queue_id, queue_name, arrival, size, sender, tuple(recipients))


# Lines as syslog writes them ("... sm-mta[12]: ID: to=...") or bare ("ID: to=...").
_TO: Final = re.compile(
    r"(?:^|: )(?P<queue_id>[0-9A-Za-x]{14,}): to=(?P<recipients>[^ ]+?),? (?P<rest>.*)$"
)
_DSN: Final = re.compile(r"dsn=(?P<dsn>[245])\.\d+\.\d+,.*?stat=(?P<stat>.*)$")
_RETURNED: Final = re.compile(
    r"(?:^|: )(?P<queue_id>[0-9A-Za-x]{14,}): (?:[0-9A-Za-x]+: )?return to sender"
)


def parse_log_line(line: str) -> list[DeliveryRecord]:
    """Final statuses in a Sendmail log line: one per recipient (``to=<a>,<b>``)."""
    if "stat=" in line and (match := _TO.search(line)):
        status = _DSN.search(match["rest"])
        if status is None or status["dsn"] == "4":
            return []
        outcome = Outcome.DELIVERED if status["dsn"] == "2" else Outcome.BOUNCED
        return [
            DeliveryRecord(match["queue_id"], address.strip("<>"), outcome, status["stat"])
            for address in match["recipients"].rstrip(",").split(",")
            if address
        ]
    if "return to sender" in line and (match := _RETURNED.search(line)):
        return [DeliveryRecord(match["queue_id"], "", Outcome.EXPIRED, "returned to sender")]
    return []


def _matching_directories(pattern: str) -> list[Path]:
    """A queue directory, or each directory a trailing ``*`` matches: Sendmail spreads one
    queue over several directories with ``QueueDirectory=/var/spool/mqueue/q*``."""
    if not pattern.endswith("*"):
        return [Path(pattern)]
    parent, prefix = os.path.split(pattern[:-1])
    try:
        names = sorted(os.listdir(parent))
    except FileNotFoundError:
        return []
    return [
        Path(parent, name)
        for name in names
        if name.startswith(prefix) and os.path.isdir(os.path.join(parent, name))
    ]


class SendmailAdapter:
    """Talks to one Sendmail through its queue files and its own command."""

    kind = "sendmail"
    flush_granularity = "Sendmail's -qI runs every recipient of a queue file"

    def __init__(self, settings: MtaSettings) -> None:
        self.settings = settings

    def cf_text(self) -> str:
        return Path(self.settings.sendmail_cf).read_text(errors="replace")

    def _run(self, *args: str) -> None:
        argv = [self.settings.sendmail, "-C", self.settings.sendmail_cf, *args]
        run_command(argv, timeout=self.settings.command_timeout_seconds)

    def list_queue(self) -> Iterator[QueueEntry]:
        return self._entries(None)

    def _entries(self, mentioning: bytes | None) -> Iterator[QueueEntry]:
        """Every queued message, or those whose qf file contains ``mentioning`` (lower case)."""
        for pattern in queue_directories(self.cf_text()):
            for directory in _matching_directories(pattern):
                yield from self._scan(directory, mentioning)

    def _scan(self, directory: Path, mentioning: bytes | None) -> Iterator[QueueEntry]:
        qf_directory = directory / "qf" if (directory / "qf").is_dir() else directory
        df_directory = directory / "df" if (directory / "df").is_dir() else directory
        try:
            names = sorted(os.listdir(qf_directory))
        except FileNotFoundError:
            return
        qf_path = str(qf_directory)
        for name in names:
            if not name.startswith("qf"):
                continue
            queue_id = name[2:]
            try:  # plain os calls: on a queue of thousands, Path objects cost as much as reading
                with open(os.path.join(qf_path, name), "rb", buffering=0) as qf:
                    data = qf.read()
            except FileNotFoundError:  # delivered while we listed
                continue
            if mentioning is not None and mentioning not in data.lower():
                continue  # most of a big queue is other domains' mail: skip the parsing
            try:
                size = (df_directory / f"df{queue_id}").stat().st_size
            except FileNotFoundError:
                size = 0
            yield parse_qf(data.decode(errors="replace"), queue_id, directory.name, size)

    def flush_domain(self, domain: DomainName) -> None:
        """Flush exactly the messages with a recipient in ``domain`` (or ``-qR@`` if configured)."""
        if self.settings.sendmail_flush == "substring":
            self._run(f"-qR@{domain.ascii}")
            return
        self._flush(self.queue_ids_for(domain))

    def queue_ids_for(self, domain: DomainName) -> list[str]:
        """Queued messages with a recipient in ``domain`` itself (not by substring)."""
        suffix = "@" + domain.ascii
        return [
            entry.queue_id
            for entry in self._entries(suffix.encode())
            if any(r.address.lower().endswith(suffix) for r in entry.recipients)
        ]

    def recipients_etrn_runs(self, argument: str) -> list[str]:
        """Queued recipients whose mail Sendmail's own ETRN for ``argument`` would run
        (its substring match); only the qf files that contain the pattern are parsed."""
        return [
            recipient.address
            for entry in self._entries(etrn_pattern(argument))
            for recipient in entry.recipients
            if etrn_runs(argument, recipient.address)
        ]

    def flush_ids(self, queue_ids: Sequence[QueueId]) -> None:
        self._flush([queue_id.value for queue_id in queue_ids])

    def _flush(self, queue_ids: Sequence[str]) -> None:
        """One ``sendmail -qI... -qI...`` per batch; the run goes on in the background."""
        for start in range(0, len(queue_ids), IDS_PER_CALL):
            self._run(*(f"-qI{queue_id}" for queue_id in queue_ids[start : start + IDS_PER_CALL]))

    def native_etrn_covers(self, entry: QueueEntry) -> bool:
        """In exact mode etrn-socketmap answers so that Sendmail runs nothing itself."""
        del entry
        return self.settings.sendmail_flush == "substring"

    def queue_lifetime_seconds(self) -> float:
        return parse_duration(
            option_seconds(self.cf_text(), "Timeout.queuereturn", "5d"), QUEUE_LIFETIME_UNIT
        )

    def read_delivery_log(
        self, path: str, since: LogPosition | None
    ) -> tuple[list[DeliveryRecord], LogPosition | None]:
        return read_log_records(path, since, parse_log_line)
