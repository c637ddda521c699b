"""The read audit: which files a play really opened on the machine running kiln, compared with
the image's manifest. A file read but not an input is a missed input, the one bug a make-like
tool must never hide: it is said, and recorded with the build."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent / "audit_site"


def audit_env(audit_file: Path, watched: list[Path]) -> dict[str, str]:
    """Environment for ansible-playbook that loads the hook and says where to write."""
    audit_file.parent.mkdir(parents=True, exist_ok=True)
    audit_file.unlink(missing_ok=True)
    path = os.environ.get("PYTHONPATH", "")
    return {
        "KILN_AUDIT_FILE": str(audit_file),
        "KILN_AUDIT_ROOTS": os.pathsep.join(str(w) for w in watched),
        "PYTHONPATH": os.pathsep.join(p for p in (str(HOOK_DIR), path) if p),
        # No bytecode written beside a plugin in the repository.
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _source(path: str) -> str:
    """A plugin's compiled file stands for its source."""
    p = Path(path)
    if p.parent.name == "__pycache__" and p.suffix == ".pyc":
        return str(p.parent.parent / (p.name.split(".", 1)[0] + ".py"))
    return path


def _prefixes(paths: list[Path]) -> tuple[str, ...]:
    return tuple(str(p).rstrip(os.sep) + os.sep for p in paths)


def read_files(audit_file: Path, ignore: list[Path], keep: list[Path]) -> list[Path]:
    """Regular files the play opened for reading (that still exist), without the ignored folders
    (kiln's state, the venv, git) unless inside a kept one (requirements installed in the state)."""
    try:
        lines = audit_file.read_text(errors="surrogateescape").splitlines()
    except OSError:
        return []
    skip, kept = _prefixes(ignore), _prefixes(keep)
    out = set()
    for line in lines:
        path = _source(line.strip())
        if not path or (path.startswith(skip) and not path.startswith(kept)):
            continue
        if os.path.isfile(path):
            out.add(Path(path))
    return sorted(out)


def ignored(root: Path, state: Path) -> list[Path]:
    """What a play may read that is not content: kiln's state, the venv kiln runs from, git."""
    return [state, Path(sys.prefix), Path(sys.prefix).resolve(), root / ".git"]
