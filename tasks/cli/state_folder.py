"""kiln's state folder ([tool.kiln] state in pyproject.toml), and why it cannot be used if it
cannot: read when dodo.py is imported, said by the task generators in one line."""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path


def state_dir(root: Path) -> Path:
    try:
        with (root / "pyproject.toml").open("rb") as fh:
            state = tomllib.load(fh).get("tool", {}).get("kiln", {}).get("state", ".kiln")
    except (OSError, tomllib.TOMLDecodeError):
        state = ".kiln"  # the task generators report a broken pyproject.toml in one line
    return root / str(state)


# Why the state folder cannot be used, if it cannot: the task generators say it in one line.
STATE_PROBLEM: list[str] = []


def writable(state: Path) -> str | None:
    try:
        state.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=state, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"{state}: kiln's state folder is not writable ({err.strerror}); make it writable or set [tool.kiln] state in pyproject.toml"
    return None
