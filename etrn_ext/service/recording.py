"""What both hooks (etrn-policyd and etrn-milter) share: which recipients are held, and
recording them through the batched writer without the MTA ever waiting for it.

The registry is read from the index in the background (``refresh_registry``) and kept
in memory; answering "is this recipient held?" touches no database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from etrn_ext.core.errors import InvalidInputError
from etrn_ext.core.model import HeldRecipient, IntermittentDomain
from etrn_ext.core.names import domain_part, parse_queue_id
from etrn_ext.core.rules import HeldDomains, storable_text
from etrn_ext.index.writer import BatchWriter
from etrn_ext.service.context import Context

log = logging.getLogger(__name__)


class HeldMailRecorder:
    """Decides which recipients are held and records held messages (one per queue id)."""

    def __init__(
        self,
        ctx: Context,
        writer: BatchWriter,
        *,
        holding_mailers: Collection[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = ctx
        self.writer = writer
        self.clock = clock
        self.holding_mailers = frozenset(holding_mailers)
        self._lock = threading.Lock()
        self.registry: Mapping[str, IntermittentDomain] = {}
        self._matcher = HeldDomains({})

    def refresh_registry(self) -> None:
        registry = {domain.name.ascii: domain for domain in self.ctx.store.list_domains()}
        with self._lock:
            self.registry = registry
            self._matcher = HeldDomains(registry)

    def held_domain(self, address: str, mailer: str = "") -> str | None:
        """The domain a recipient is held for: a registered one, or any domain whose mail
        the MTA routes to a holding mailer/transport (``{rcpt_mailer}``)."""
        domain = self._matcher.for_address(address)
        if domain is None and mailer and mailer in self.holding_mailers:
            domain = domain_part(address) or None
        return domain

    def record(
        self, queue_id: str, sender: str, size: int, recipients: Sequence[tuple[str, str]]
    ) -> bool:
        """Queue one row per held recipient; False when the queue id is not one.

        Addresses are made storable here, where both hooks hand them over: 8-bit bytes
        from SMTP must not fail the writer's batch (see ``storable_text``).
        """
        try:
            checked = parse_queue_id(queue_id).value
        except InvalidInputError:
            log.warning("held mail without a valid queue id (%r); not recorded", queue_id)
            return False
        now = self.clock()
        stored_sender = storable_text(sender)
        stored = [(storable_text(address), storable_text(domain)) for address, domain in recipients]
        self.writer.submit_held(
            HeldRecipient(
                node=self.ctx.node,
                queue_id=checked,
                recipient=address,
                domain=domain,
                sender=stored_sender,
                size=size,
                arrival_time=now,
                first_seen=now,
                last_seen=now,
            )
            for address, domain in stored
        )
        domains = ",".join(sorted({domain for _address, domain in stored}))
        log.info(
            "%s: held domain=%s recipients=%d size=%d", checked, domains, len(recipients), size
        )
        return True
