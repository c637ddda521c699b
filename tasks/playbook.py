"""Which files a playbook is made of: the playbook, the Ansible roles it uses (with their role
dependencies), and the vars and config beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import KilnError
from .statcache import walk_files


def _load_yaml(path: Path, shown: str) -> Any:
    import yaml  # lazily: `doit list` does not pay for it

    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise KilnError(f"{shown}: file not found") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise KilnError(f"{shown}{where}: YAML error: {err.problem}") from None
    except yaml.YAMLError as err:
        raise KilnError(f"{shown}: YAML error: {err}") from None


def _role_names(items: Any) -> list[str]:
    names: list[str] = []
    for item in items or []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            name = item.get("role") or item.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def _task_roles(tasks: Any) -> list[str]:
    names: list[str] = []
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for key in ("include_role", "import_role", "ansible.builtin.include_role", "ansible.builtin.import_role"):
            spec = task.get(key)
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                names.append(spec["name"])
        for key in ("block", "rescue", "always"):
            names.extend(_task_roles(task.get(key)))
    return names


def playbook_files(root: Path, playbook: str) -> list[Path]:
    """All files the playbook depends on, sorted; raises KilnError naming the file and line."""
    path = root / playbook
    if not path.is_file():
        raise KilnError(f"{playbook}: playbook does not exist")
    plays = _load_yaml(path, playbook)
    if not isinstance(plays, list):
        raise KilnError(f"{playbook}: a playbook is a YAML list of plays")
    base = path.parent
    roles_dir = base / "roles"
    wanted: list[str] = []
    for play in plays:
        if isinstance(play, dict):
            wanted += _role_names(play.get("roles"))
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                wanted += _task_roles(play.get(key))
    files = {path}
    for extra in ("ansible.cfg", "requirements.yml"):
        if (base / extra).is_file():
            files.add(base / extra)
    for vars_dir in ("group_vars", "host_vars"):
        files.update(walk_files(base / vars_dir))
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        role_dir = roles_dir / name
        if not role_dir.is_dir():
            rel = roles_dir.relative_to(root)
            raise KilnError(f"{playbook}: uses Ansible role '{name}', which is not in {rel}/")
        files.update(walk_files(role_dir))
        meta = role_dir / "meta" / "main.yml"
        if meta.is_file():
            data = _load_yaml(meta, str(meta.relative_to(root)))
            if isinstance(data, dict):
                wanted += _role_names(data.get("dependencies"))
        for tasks_file in sorted((role_dir / "tasks").glob("*.yml")):
            wanted += _task_roles(_load_yaml(tasks_file, str(tasks_file.relative_to(root))))
    return sorted(files)
