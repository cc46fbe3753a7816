"""Logging in the MTA admins' style: one line per event, queue id first, syslog ident = program.

Daemons log to syslog (facility from ``[log] syslog_facility``) when ``/dev/log`` exists and
to stderr otherwise; ``etrnctl`` logs warnings and errors to stderr, where people see them.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Final

from etrn_ext.config import LogSettings

SYSLOG_SOCKET: Final = "/dev/log"


def setup_logging(
    program: str, settings: LogSettings, *, to_syslog: bool, level: str | None = None
) -> None:
    """Send ``etrn_ext`` logs to syslog (as ``program[pid]``) or to stderr (as ``program:``)."""
    _skip_unused_record_fields()
    handler: logging.Handler
    if to_syslog and os.path.exists(SYSLOG_SOCKET):
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET,
            facility=logging.handlers.SysLogHandler.facility_names[settings.syslog_facility],
        )
        handler.setFormatter(logging.Formatter(f"{program}[{os.getpid()}]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{program}: %(levelname)s: %(message)s"))
    root = logging.getLogger("etrn_ext")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or settings.level).upper())


def _skip_unused_record_fields() -> None:
    """Our formats use none of the caller, thread or process fields; not collecting them
    (the logging HOWTO's "Optimization") takes a third off each line the hooks log per
    message. The pid is fixed into the syslog format instead."""
    logging._srcfile = None  # the documented switch for the caller lookup
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
