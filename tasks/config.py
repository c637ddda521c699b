"""DOIT_CONFIG for dodo.py: cheap and exception-free, since it runs at import."""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path
from typing import Any

from .reporter import KilnReporter


def state_dir(root: Path) -> Path:
    try:
        with (root / "pyproject.toml").open("rb") as fh:
            state = tomllib.load(fh).get("tool", {}).get("kiln", {}).get("state", ".kiln")
    except (OSError, tomllib.TOMLDecodeError):
        state = ".kiln"  # the task generators report a broken pyproject.toml in one line
    return root / str(state)


def doit_config(root: Path) -> dict[str, Any]:
    state = state_dir(root)
    with contextlib.suppress(OSError):
        state.mkdir(parents=True, exist_ok=True)
    roles = (
        sorted(p.name for p in (root / "packer").iterdir() if p.is_dir() and not p.name.startswith("_"))
        if (root / "packer").is_dir()
        else []
    )
    return {
        "dep_file": str(state / "doit.sqlite3"),
        "backend": "sqlite3",
        "reporter": KilnReporter,
        "default_tasks": roles,
    }
