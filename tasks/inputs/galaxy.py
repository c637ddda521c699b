"""requirements.yml, installed by ansible-galaxy into the state folder once per content.

The key is the requirements file's bytes plus the bytes of every local source it names (a
tarball or folder beside it), so a new tarball under the same name installs again. Installed
content, not the file that names it, is what images depend on: a version bump rebuilds exactly
the roles whose plays use what changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tasks.errors import KilnError
from tasks.file_lock import file_lock
from tasks.inputs.statcache import walk_files
from tasks.inputs.yaml_files import load_yaml, read_text

# Where Ansible's own tooling (AWX, ansible-builder) looks for requirements beside a playbook.
REQUIREMENTS = ("requirements.yml", "requirements.yaml", "roles/requirements.yml", "collections/requirements.yml")


def requirement_files(playbook_dir: Path) -> list[Path]:
    return [playbook_dir / r for r in REQUIREMENTS if (playbook_dir / r).is_file()]


def _entries(data: Any) -> tuple[list[Any], list[Any]]:
    if isinstance(data, list):  # the old roles-only format
        return data, []
    if isinstance(data, dict):
        return list(data.get("roles") or []), list(data.get("collections") or [])
    return [], []


def _local_source(entry: Any, base: Path) -> Path | None:
    value = (
        entry
        if isinstance(entry, str)
        else (entry.get("src") or entry.get("source") or entry.get("name"))
        if isinstance(entry, dict)
        else None
    )
    if not isinstance(value, str):
        return None
    value = value.removeprefix("file://")
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else base / path
    return path if path.exists() else None


def _key(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(read_text(f)[1].encode())
        roles, colls = _entries(load_yaml(f, _shown(f, root)))
        for entry in roles + colls:
            local = _local_source(entry, f.parent)
            if local is None:
                continue
            for part in [local] if local.is_file() else walk_files(local):
                h.update(str(part.relative_to(local.parent)).encode())
                h.update(hashlib.sha256(part.read_bytes()).hexdigest().encode())
    return h.hexdigest()[:24]


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def installed_requirements(root: Path, state: Path, playbook_dir: Path, say: Any = None) -> Path | None:
    """The folder holding what the playbook's requirements install (roles/, collections/), or
    None when there are none. Installs on first need; later runs only hash the files."""
    files = requirement_files(playbook_dir)
    if not files:
        return None
    key = _key(files, root)
    target = state / "galaxy" / key
    if (target / ".complete").exists():
        return target
    with file_lock(state / "locks" / f"galaxy-{key}.lock"):
        if (target / ".complete").exists():  # another run installed it while we waited
            return target
        tmp = target.with_name(f".{key}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log = state / "logs" / "galaxy" / f"{key}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if say is not None:
            say(f"installing {', '.join(_shown(f, root) for f in files)} with ansible-galaxy (log {log})")
        try:
            with log.open("w") as out:
                for f in files:
                    roles, colls = _entries(load_yaml(f, _shown(f, root)))
                    if roles:
                        _galaxy(["role", "install", "-r", str(f), "-p", str(tmp / "roles")], f, root, out, log)
                    if colls:
                        _galaxy(
                            ["collection", "install", "-r", str(f), "-p", str(tmp / "collections")], f, root, out, log
                        )
            (tmp / "roles").mkdir(parents=True, exist_ok=True)
            (tmp / "collections").mkdir(parents=True, exist_ok=True)
            (tmp / ".complete").write_text("\n".join(_shown(f, root) for f in files) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


_FAILED = re.compile(r"(?:ERROR!|\[ERROR\]:)\s*(.*)")


def _galaxy(args: list[str], req: Path, root: Path, out: Any, log: Path) -> None:
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_NOCOLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    cmd = [str(galaxy), *args]
    out.write(f"# {' '.join(cmd)}\n")
    out.flush()
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=req.parent, env=env, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out.write(proc.stdout)
    if proc.returncode == 0:
        return
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    found = next(
        (m.group(1) for ln in lines if (m := _FAILED.search(ln))),
        lines[-1] if lines else f"exit code {proc.returncode}",
    )
    raise KilnError(
        f"{_shown(req, root)}: ansible-galaxy {args[0]} install failed: {found.rstrip('.')};"
        f" check the name, version and source (without network, use a local tarball or folder); see {log}"
    )
