"""`python -m sweeps ...` is the `sweeps` command."""

from sweeps.cli.main import command

command()
