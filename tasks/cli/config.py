"""DOIT_CONFIG for dodo.py: cheap and exception-free, since it runs at import."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tasks.cli.reporter import KilnReporter
from tasks.cli.state_folder import STATE_PROBLEM, state_dir, writable


def doit_config(root: Path) -> dict[str, Any]:
    state = state_dir(root)
    problem = writable(state)
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
