"""The Session of this doit command line, made by the first task generator that asks."""

from __future__ import annotations

from pathlib import Path

from doit.exceptions import InvalidCommand

from tasks.catalog.load import load_catalog
from tasks.cli.session import Session
from tasks.errors import KilnError

# The run of this doit command line, for the reporter (which learns the selected tasks). Keyed
# by doit's variables dict, which doit makes anew for every command line (tests run several
# command lines in one process).
CURRENT: list[Session] = []
_FOR_VARS: list[object] = []


def current_run(root: Path) -> Session:
    """The Session of this command line, made on the first call of any task generator."""
    from doit import doit_cmd

    from tasks.cli.options import read_options
    from tasks.cli.state_folder import STATE_PROBLEM

    if STATE_PROBLEM:
        raise InvalidCommand(STATE_PROBLEM[0])
    if not CURRENT or _FOR_VARS[0] is not doit_cmd._CMDLINE_VARS:
        try:
            catalog = load_catalog(root)
            run = Session(catalog, read_options(catalog))
        except KilnError as err:
            raise InvalidCommand(str(err)) from None
        CURRENT[:] = [run]
        _FOR_VARS[:] = [doit_cmd._CMDLINE_VARS]
    return CURRENT[0]
