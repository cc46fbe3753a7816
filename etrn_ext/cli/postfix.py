"""``etrnctl postfix-config`` and ``etrnctl doctor``: set up and check a Postfix relay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState

EX_PROBLEMS_FOUND = 1


@click.command("postfix-config")
@click.argument("domains", nargs=-1, metavar="[DOMAIN]...")
@click.option("--generic", is_flag=True, help="Do not merge with the live configuration.")
@click.option("--no-policyd", is_flag=True, help="Leave out the etrn-policyd lines.")
@click.option("--milter", is_flag=True, help="Add the etrn-milter lines.")
@click.pass_obj
def postfix_config(
    state: CliState, /, domains: tuple[str, ...], generic: bool, no_policyd: bool, milter: bool
) -> None:
    """Print the main.cf, master.cf and map lines for DOMAINs (default: all registered)."""
    from etrn_ext.service.postfix import postfix_config as render_config

    text = render_config(
        state.context(), domains, live=not generic, policyd=not no_policyd, milter=milter
    )
    click.echo(text, nl=False)


@click.command("doctor")
@click.argument("domains", nargs=-1, metavar="[DOMAIN]...")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
def doctor(state: CliState, /, domains: tuple[str, ...], as_json: bool) -> None:
    """Check the live Postfix for known ETRN traps; exit 1 if any error is found."""
    from etrn_ext.service.postfix import doctor as run_doctor

    findings = run_doctor(state.context(), domains)
    errors = sum(finding.severity == "error" for finding in findings)
    if as_json:
        render.emit_json(
            [{"severity": f.severity, "problem": f.problem, "fix": f.fix} for f in findings]
        )
    else:
        for finding in findings:
            click.echo(f"{finding.severity}: {finding.problem}\n  fix: {finding.fix}")
        warnings = len(findings) - errors
        click.echo(
            f"doctor: {errors} error(s), {warnings} warning(s)"
            if findings
            else "doctor: no problems found"
        )
    if errors:
        raise click.exceptions.Exit(EX_PROBLEMS_FOUND)
