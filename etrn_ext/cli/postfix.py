"""``etrnctl postfix-config``, ``sendmail-config`` and ``doctor``: set up and check a relay."""

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
    """Check the live MTA configuration for known ETRN traps; exit 1 if any error is found."""
    ctx = state.context()
    if ctx.settings.mta.kind == "sendmail":
        from etrn_ext.service.sendmail import sendmail_doctor

        findings = sendmail_doctor(ctx, domains)
    else:
        from etrn_ext.service.postfix import doctor as postfix_doctor

        findings = postfix_doctor(ctx, domains)
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


@click.command("sendmail-config")
@click.argument("domains", nargs=-1, metavar="[DOMAIN]...")
@click.option("--generic", is_flag=True, help="Do not read the live sendmail.cf.")
@click.pass_obj
def sendmail_config(state: CliState, /, domains: tuple[str, ...], generic: bool) -> None:
    """Print the sendmail.mc, mailertable and access lines for DOMAINs (default: all)."""
    from etrn_ext.service.sendmail import sendmail_config as render_config

    click.echo(render_config(state.context(), domains, live=not generic), nl=False)
