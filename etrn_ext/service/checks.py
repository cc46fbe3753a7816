"""Checks of the configuration against the machine (``etrnctl config check``)."""

from __future__ import annotations

from etrn_ext.config import Settings
from etrn_ext.core.errors import ConfigError
from etrn_ext.mta.run import is_executable

COMMANDS_BY_MTA = {
    "postfix": ("postqueue", "postsuper", "postconf", "postmap"),
    "sendmail": ("sendmail",),
}


def check_settings(settings: Settings) -> None:
    """Raise ``ConfigError`` naming the first MTA command of the configured kind that cannot run."""
    for key in COMMANDS_BY_MTA[settings.mta.kind]:
        path = getattr(settings.mta, key)
        if not is_executable(path):
            raise ConfigError(f"mta.{key}", f"{path} is not an executable file", settings.source)
