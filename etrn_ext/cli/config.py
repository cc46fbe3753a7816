"""``etrnctl config``: show the effective settings, check the file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState


@click.group()
def config() -> None:
    """Show and check the configuration."""


@config.command("show")
@click.option(
    "-n", "--non-default", is_flag=True, help="Only settings given in the file (like postconf -n)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def show(state: CliState, /, non_default: bool, as_json: bool) -> None:
    """Print the effective settings as 'section.key = value'."""
    from etrn_ext.config import describe

    infos = [info for info in describe(state.settings) if info.explicit or not non_default]
    if as_json:
        render.emit_json({info.name: info.value for info in infos})
        return
    for info in infos:
        value = str(info.value).lower() if isinstance(info.value, bool) else info.value
        click.echo(f"{info.name} = {value}")


@config.command("check")
@click.pass_obj
def check(state: CliState, /) -> None:
    """Validate the configuration file and the MTA commands it names."""
    from etrn_ext.service.checks import check_settings

    settings = state.settings
    check_settings(settings)
    click.echo(f"{settings.source or 'built-in defaults (no configuration file)'}: OK")
