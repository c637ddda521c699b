"""doit's `run` command with one change: an unknown task name is one line listing the roles.

Installed through pyproject.toml's [tool.doit.plugins.command], which replaces doit's own `run`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from doit.cmd_run import Run
from doit.exceptions import InvalidCommand


class KilnRun(Run):  # type: ignore[misc]
    name = "run"

    def execute(self, params: Any, args: Any) -> Any:
        try:
            return super().execute(params, args)
        except (sqlite3.Error, OSError) as err:
            # doit's own dependency file failed (a full disk, a vanished folder): say it in one
            # line; kiln's results were committed image by image and are not lost.
            dep_file = (
                params.get("dep_file", "doit's dependency file") if hasattr(params, "get") else "doit's dependency file"
            )
            raise InvalidCommand(
                f"{dep_file}: doit could not save its state ({' '.join(str(err).split())}); free space in the state folder"
            ) from None
        except InvalidCommand as err:
            if err.not_found is None:
                raise
            packer = Path("packer")
            roles = (
                sorted(p.name for p in packer.iterdir() if p.is_dir() and not p.name.startswith("_"))
                if packer.is_dir()
                else []
            )
            raise InvalidCommand(
                f"unknown role or task '{err.not_found}'; roles: {', '.join(roles) or '(none)'} ('doit list' shows every task)"
            ) from None
