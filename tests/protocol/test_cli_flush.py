"""etrnctl flush's --wait option as click parses it: its value is optional, so the word
after it is read as the seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from etrn_ext.cli.flush import flush
from etrn_ext.cli.main import cli


@pytest.mark.parametrize(
    ("args", "seconds"),
    [
        pytest.param(["site.example", "--wait"], 120.0, id="last-takes-the-default"),
        pytest.param(["--wait", "--json", "site.example"], 120.0, id="before-an-option"),
        pytest.param(["--wait", "300", "site.example"], 300.0, id="before-the-domain"),
        pytest.param(["--wait=5", "site.example"], 5.0, id="equals-form"),
        pytest.param(["site.example", "--wait", "2.5"], 2.5, id="after-the-domain"),
        pytest.param(["site.example"], None, id="no-wait"),
    ],
)
def test_wait_forms(args: list[str], seconds: float | None) -> None:
    with flush.make_context("flush", args) as context:
        assert context.params["wait_seconds"] == seconds


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--wait", "nan", "site.example"], "finite", id="nan"),
        pytest.param(["site.example", "--wait=inf"], "finite", id="inf"),
        pytest.param(["site.example", "--wait=-1"], "-1", id="negative"),
        pytest.param(["site.example", "--wait=0"], "range", id="zero"),
        pytest.param(["--wait", "site.example"], "--wait=SECONDS", id="domain-read-as-seconds"),
    ],
)
def test_wait_refuses_what_is_not_a_positive_finite_number(
    tmp_path: Path, args: list[str], message: str
) -> None:
    config = tmp_path / "etrn-ext.toml"  # should parsing let a value through: a private index
    config.write_text(f'[index]\nurl = "sqlite:///{tmp_path}/index.sqlite"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "flush", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
