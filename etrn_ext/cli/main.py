"""etrnctl: the group, global options, and the map from errors to documented exit codes.

Only ``click`` is imported at module level; each command imports the service layer
when it runs, so ``etrnctl --help`` starts in a few tens of milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import click

from etrn_ext import __version__
from etrn_ext.core.errors import (
    ConfigError,
    DomainExistsError,
    DomainInUseError,
    EtrnExtError,
    IndexUnavailableError,
    InvalidInputError,
    LocalMtaUnavailableError,
    MailSubmissionError,
    MtaCommandError,
    OutputFileError,
    SchemaVersionError,
    UnknownDomainError,
    UnknownMessageError,
)

if TYPE_CHECKING:
    from etrn_ext.config import Settings
    from etrn_ext.service.context import Context

PROGRAM: Final = "etrnctl"

# sysexits(3) codes; documented in etrnctl(1) under EXIT STATUS. First match wins.
EX_DATAERR: Final = 65
EX_NOINPUT: Final = 66
EX_NOHOST: Final = 68
EX_UNAVAILABLE: Final = 69
EX_SOFTWARE: Final = 70
EX_CANTCREAT: Final = 73
EX_TEMPFAIL: Final = 75
EX_NOPERM: Final = 77
EX_CONFIG: Final = 78

EXIT_CODES: Final[tuple[tuple[type[EtrnExtError], int], ...]] = (
    (ConfigError, EX_CONFIG),
    (SchemaVersionError, EX_CONFIG),
    (InvalidInputError, EX_DATAERR),
    (DomainInUseError, EX_DATAERR),
    (UnknownDomainError, EX_NOINPUT),
    (UnknownMessageError, EX_NOINPUT),
    (DomainExistsError, EX_CANTCREAT),
    (OutputFileError, EX_CANTCREAT),
    (MtaCommandError, EX_UNAVAILABLE),
    (MailSubmissionError, EX_UNAVAILABLE),
    (IndexUnavailableError, EX_TEMPFAIL),
    (LocalMtaUnavailableError, EX_TEMPFAIL),
)

# How ``etrnctl trigger`` ended (``core.trigger.Summary`` values), when no error above applies.
TRIGGER_EXIT_CODES: Final[Mapping[str, int]] = {
    "flushed": 0,
    "partial": EX_TEMPFAIL,
    "refused": EX_NOPERM,
    "unreachable": EX_NOHOST,
}


def exit_code_for(error: EtrnExtError) -> int:
    for error_class, code in EXIT_CODES:
        if isinstance(error, error_class):
            return code
    return EX_SOFTWARE


class CliState:
    """What the group knows before a command runs: where the configuration is."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from etrn_ext.config import load_settings
            from etrn_ext.log import setup_logging

            self._settings = load_settings(self.config_path)
            setup_logging(PROGRAM, self._settings.log, to_syslog=False, level="warning")
        return self._settings

    def context(self) -> Context:
        """A service context for this invocation; closed when the command ends."""
        from etrn_ext.service.context import Context, local_actor

        service_context = Context(self.settings, actor=local_actor())
        click.get_current_context().call_on_close(service_context.close)
        return service_context


class EtrnctlGroup(click.Group):
    """The top-level group: turns our errors into one ``etrnctl: error:`` line and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except EtrnExtError as exc:
            click.echo(f"{PROGRAM}: error: {exc}", err=True)
            raise click.exceptions.Exit(exit_code_for(exc)) from exc
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            logging.getLogger("etrn_ext").exception("internal error")
            click.echo(f"{PROGRAM}: internal error: {exc!r}", err=True)
            raise click.exceptions.Exit(EX_SOFTWARE) from exc


@click.group(
    cls=EtrnctlGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-c",
    "--config",
    "config_path",
    metavar="FILE",
    help="Configuration file (default: $ETRN_EXT_CONFIG, then /etc/etrn-ext/etrn-ext.toml).",
)
@click.version_option(__version__, prog_name=PROGRAM)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Inspect and manage mail held for intermittent (ETRN) domains."""
    ctx.obj = CliState(config_path)


def _register_commands() -> None:
    from etrn_ext.cli.config import config
    from etrn_ext.cli.domains import domain
    from etrn_ext.cli.flush import flush
    from etrn_ext.cli.postfix import doctor, postfix_config, sendmail_config
    from etrn_ext.cli.queue import events, list_, show, summary
    from etrn_ext.cli.report import notify, report
    from etrn_ext.cli.sync import sync
    from etrn_ext.cli.trigger import trigger

    commands = (
        config,
        doctor,
        domain,
        events,
        flush,
        list_,
        notify,
        postfix_config,
        report,
        sendmail_config,
        show,
        summary,
        sync,
        trigger,
    )
    for command in commands:
        cli.add_command(command)


_register_commands()


def run() -> None:
    """Console entry point (``etrnctl``)."""
    cli(prog_name=PROGRAM)
