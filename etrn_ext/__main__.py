"""``python -m etrn_ext`` is ``etrnctl``."""

from etrn_ext.cli.main import run

run()
