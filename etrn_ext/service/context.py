"""What a use case needs: settings, a clock, who is acting, and lazily opened adapters."""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from etrn_ext.config import Settings

if TYPE_CHECKING:
    from etrn_ext.index.store import IndexStore
    from etrn_ext.mta.base import MtaAdapter


def local_actor() -> str:
    """Who runs a local command, as an audit trail wants it (``root via sudo from ann``)."""
    user = getpass.getuser()
    sudo_user = os.environ.get("SUDO_USER")
    return f"{user} via sudo from {sudo_user}" if sudo_user and sudo_user != user else user


class Context:
    """Per-invocation state shared by the use cases; ``close()`` releases what was opened."""

    def __init__(
        self,
        settings: Settings,
        *,
        actor: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.actor = actor
        self.clock = clock

    @property
    def node(self) -> str:
        return self.settings.node

    # The adapters are imported when first used: commands pay only for what they touch,
    # and sync can start the MTA's queue listing before SQLAlchemy is even imported.

    @cached_property
    def store(self) -> IndexStore:
        from etrn_ext.index.store import IndexStore  # noqa: PLC0415

        return IndexStore.open(self.settings.index)

    @cached_property
    def mta(self) -> MtaAdapter:
        if self.settings.mta.kind == "sendmail":
            from etrn_ext.mta.sendmail import SendmailAdapter  # noqa: PLC0415

            return SendmailAdapter(self.settings.mta)
        from etrn_ext.mta.postfix import PostfixAdapter  # noqa: PLC0415

        return PostfixAdapter(self.settings.mta)

    def reload(self, settings: Settings) -> None:
        """New settings (a daemon's SIGHUP): the MTA adapter is made anew on next use, so it
        re-reads what it caches from the MTA (Postfix's fast_flush_domains); the index
        stays open (a new ``[index] url`` needs a restart)."""
        self.settings = settings
        self.__dict__.pop("mta", None)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
