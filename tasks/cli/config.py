"""DOIT_CONFIG for dodo.py: cheap and exception-free, since it runs at import."""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from tasks.cli.reporter import KilnReporter


def state_dir(root: Path) -> Path:
    try:
        with (root / "pyproject.toml").open("rb") as fh:
            state = tomllib.load(fh).get("tool", {}).get("kiln", {}).get("state", ".kiln")
    except (OSError, tomllib.TOMLDecodeError):
        state = ".kiln"  # the task generators report a broken pyproject.toml in one line
    return root / str(state)


# Why the state folder cannot be used, if it cannot: the task generators say it in one line.
STATE_PROBLEM: list[str] = []


def _writable(state: Path) -> str | None:
    try:
        state.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=state, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"{state}: kiln's state folder is not writable ({err.strerror}); make it writable or set [tool.kiln] state in pyproject.toml"
    return None


def doit_config(root: Path) -> dict[str, Any]:
    state = state_dir(root)
    problem = _writable(state)
    STATE_PROBLEM[:] = [problem] if problem else []
    # doit opens its dependency file before any task generator can speak: give it a scratch
    # one, so that the generators report the problem in one line instead of doit's traceback.
    dep_dir = Path(tempfile.gettempdir()) if problem else state
    roles = (
        sorted(p.name for p in (root / "packer").iterdir() if p.is_dir() and not p.name.startswith("_"))
        if (root / "packer").is_dir()
        else []
    )
    return {
        "dep_file": str(dep_dir / ("kiln-unusable-state.sqlite3" if problem else "doit.sqlite3")),
        "backend": "sqlite3",
        "reporter": KilnReporter,
        "default_tasks": roles,
    }
