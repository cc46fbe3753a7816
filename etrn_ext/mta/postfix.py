"""Postfix adapter: postqueue, postconf, postmap and postsuper against one configuration directory.

Every command gets ``-c config_directory`` from the settings, so a private instance is
driven exactly like the system one. Facts this relies on (research notes, Postfix 3.7):
``postqueue -j`` lists pending recipients only; ``postqueue -s`` exits 69 when the
domain is not a fast-flush domain; ``postqueue -i`` takes one id per call and always
exits 0; the null sender is shown as ``MAILER-DAEMON``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from etrn_ext.config import MtaSettings
from etrn_ext.core.errors import MtaCommandError
from etrn_ext.core.model import DeliveryRecord, Outcome, QueuedRecipient, QueueEntry
from etrn_ext.core.names import DomainName, QueueId, domain_part
from etrn_ext.core.postfix_setup import is_listed, split_list
from etrn_ext.core.units import QUEUE_LIFETIME_UNIT, parse_duration
from etrn_ext.mta.base import LogPosition
from etrn_ext.mta.logfile import read_log_records
from etrn_ext.mta.run import LineStream, run_command

EX_UNAVAILABLE: Final = 69
PARALLEL_ID_FLUSHES: Final = 4
POSTSUPER_ACTIONS: Final = {"hold": "-h", "release": "-H", "requeue": "-r"}


class NotFastFlushError(MtaCommandError):
    """``postqueue -s`` refused: Postfix keeps no flush log for this domain."""

    def __init__(self, domain: DomainName, argv: Sequence[str], stderr: str) -> None:
        reason = (
            f"{domain} is not a fast-flush domain, so Postfix cannot flush it per domain; "
            "add it to relay_domains (fast_flush_domains defaults to $relay_domains) or to "
            f"fast_flush_domains and run 'postfix reload' (see 'etrnctl postfix-config {domain}')"
        )
        super().__init__(argv, reason, returncode=EX_UNAVAILABLE, stderr=stderr)
        self.domain = domain


@dataclass(frozen=True, slots=True)
class MasterService:
    """One master.cf service as ``postconf -M`` prints it."""

    name: str
    type: str
    command: str


def parse_queue_line(line: str) -> QueueEntry:
    """One ``postqueue -j`` JSON object as a ``QueueEntry``."""
    return _queue_entry(json.loads(line))


def parse_queue_lines(lines: Iterable[str], chunk: int = 500) -> Iterator[QueueEntry]:
    """``postqueue -j`` output as entries; lines are decoded a few hundred at a time.

    One ``json.loads`` of ``[line,line,...]`` costs far less than one call per line,
    and sync reads 20,000 lines while Postfix is still writing them.
    """
    batch: list[str] = []
    for line in lines:
        if line.strip():
            batch.append(line)
        if len(batch) >= chunk:
            yield from map(_queue_entry, json.loads(f"[{','.join(batch)}]"))
            batch = []
    if batch:
        yield from map(_queue_entry, json.loads(f"[{','.join(batch)}]"))


def _queue_entry(record: dict[str, Any]) -> QueueEntry:
    return QueueEntry(
        queue_id=record["queue_id"],
        queue_name=record["queue_name"],
        arrival_time=float(record["arrival_time"]),
        size=int(record["message_size"]),
        sender=record["sender"],
        recipients=tuple(
            QueuedRecipient(recipient["address"], recipient.get("delay_reason", ""))
            for recipient in record["recipients"]
        ),
    )


_RECIPIENT_STATUS: Final = re.compile(
    r": (?P<queue_id>[0-9A-Za-z]{5,}): to=<(?P<recipient>[^>]*)>, .*?"
    r"status=(?P<status>sent|bounced)(?: \((?P<text>.*)\))?\s*$"
)
_MESSAGE_EXPIRED: Final = re.compile(
    r": (?P<queue_id>[0-9A-Za-z]{5,}): from=<[^>]*>, status=(?:force-)?expired, returned to sender"
)
_OUTCOMES: Final = {"sent": Outcome.DELIVERED, "bounced": Outcome.BOUNCED}


def parse_log_line(line: str) -> DeliveryRecord | None:
    """A final status from a Postfix log line (``status=sent|bounced``, message expiry), if any."""
    if "status=" not in line:
        return None
    match = _RECIPIENT_STATUS.search(line)
    if match:
        return DeliveryRecord(
            match["queue_id"], match["recipient"], _OUTCOMES[match["status"]], match["text"] or ""
        )
    match = _MESSAGE_EXPIRED.search(line)
    if match:
        return DeliveryRecord(match["queue_id"], "", Outcome.EXPIRED, "returned to sender")
    return None


def parse_postconf(output: str) -> dict[str, str]:
    """``name = value`` lines of ``postconf`` into a dict."""
    values = {}
    for line in output.splitlines():
        name, equals, value = line.partition(" = ")
        if equals:
            values[name.strip()] = value.strip()
        elif line.endswith(" ="):
            values[line[:-2].strip()] = ""
    return values


class PostfixAdapter:
    """Talks to one Postfix instance through its own commands."""

    kind = "postfix"
    flush_granularity = "Postfix flushes whole queue files"

    def __init__(self, settings: MtaSettings) -> None:
        self.settings = settings

    def _argv(self, program: str, *args: str) -> list[str]:
        return [program, "-c", self.settings.config_directory, *args]

    def _run(self, program: str, *args: str) -> str:
        argv = self._argv(program, *args)
        return run_command(argv, timeout=self.settings.command_timeout_seconds).stdout

    # --- the MtaAdapter interface -----------------------------------------------------

    def list_queue(self) -> Iterator[QueueEntry]:
        """Start ``postqueue -j`` now; parse its lines as the caller iterates."""
        argv = self._argv(self.settings.postqueue, "-j")
        return parse_queue_lines(LineStream(argv, timeout=self.settings.command_timeout_seconds))

    def flush_domain(self, domain: DomainName) -> None:
        argv = self._argv(self.settings.postqueue, "-s", domain.ascii)
        result = run_command(argv, timeout=self.settings.command_timeout_seconds, check=False)
        if result.returncode == EX_UNAVAILABLE and "not configured" in result.stderr:
            raise NotFastFlushError(domain, argv, result.stderr)
        result.check_returncode()

    def flush_ids(self, queue_ids: Sequence[QueueId]) -> None:
        """``postqueue -i`` takes one id per call, so a few calls run side by side."""
        if not queue_ids:
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_ID_FLUSHES, len(queue_ids))) as pool:
            list(
                pool.map(
                    lambda queue_id: self._run(self.settings.postqueue, "-i", queue_id.value),
                    queue_ids,
                )
            )

    def queue_lifetime_seconds(self) -> float:
        lifetime = self.parameters(["maximal_queue_lifetime"])["maximal_queue_lifetime"]
        return parse_duration(lifetime, QUEUE_LIFETIME_UNIT)

    def read_delivery_log(
        self, path: str, since: LogPosition | None
    ) -> tuple[list[DeliveryRecord], LogPosition | None]:
        return read_log_records(path, since, lambda line: [r for r in [parse_log_line(line)] if r])

    def native_etrn_covers(self, entry: QueueEntry) -> bool:
        """Whether Postfix's own ETRN flush delivers this message.

        A message is in a domain's flush log only once a delivery agent deferred it, and
        only domains in fast_flush_domains have a flush log: a queued message never
        deferred (e.g. just released from the hold queue) or of another domain is missed.
        Messages not in the deferred queue are being delivered or on hold: nothing to add.
        """
        if entry.queue_name != "deferred":
            return True
        patterns, parents = self._fast_flush_domains()
        return all(
            recipient.delay_reason
            and is_listed(domain_part(recipient.address), patterns, parents_match=parents)
            is not False
            for recipient in entry.recipients
        )

    @functools.cache  # noqa: B019 - one adapter per process; postconf once is the point
    def _fast_flush_domains(self) -> tuple[list[str], bool]:
        values = self.parameters(["fast_flush_domains", "parent_domain_matches_subdomains"])
        parents = "fast_flush_domains" in split_list(
            values.get("parent_domain_matches_subdomains", "")
        )
        return split_list(values.get("fast_flush_domains", "")), parents

    # --- Postfix-only facts, for doctor and postfix-config -----------------------------

    def parameters(self, names: Iterable[str]) -> dict[str, str]:
        """Expanded values (``postconf -x``) of main.cf parameters; unknown ones are left out."""
        return parse_postconf(self._run(self.settings.postconf, "-x", *names))

    def master_services(self) -> list[MasterService]:
        services = []
        for line in self._run(self.settings.postconf, "-M").splitlines():
            fields = line.split()
            if len(fields) >= 8:
                services.append(MasterService(fields[0], fields[1], " ".join(fields[7:])))
        return services

    def lookup(self, maps: str, key: str) -> str | None:
        """The first result for ``key`` in a Postfix map list (``postmap -q``), or None."""
        for table in split_list(maps):
            argv = self._argv(self.settings.postmap, "-q", key, table)
            result = run_command(argv, timeout=self.settings.command_timeout_seconds, check=False)
            if result.returncode == 0:
                return result.stdout.strip()
            if result.returncode != 1:  # 1: not in this table, ask the next one
                result.check_returncode()
        return None

    def postsuper(self, action: str, queue_ids: Sequence[QueueId]) -> None:
        """Root-only queue surgery: ``hold`` (-h), ``release`` (-H) or ``requeue`` (-r) messages."""
        flag = POSTSUPER_ACTIONS[action]
        args = [part for queue_id in queue_ids for part in (flag, queue_id.value)]
        if args:
            self._run(self.settings.postsuper, *args)
