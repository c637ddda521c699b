"""How a playbook is written, as the scanner reads it: the task keywords that are not actions,
the modules and lookups that read controller files, and the free-form and FQCN forms of a task."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Keys of a task that are not its action.
TASK_KEYWORDS = frozenset(
    [
        "name",
        "when",
        "register",
        "loop",
        "loop_control",
        "until",
        "retries",
        "delay",
        "become",
        "become_user",
        "become_method",
        "become_flags",
        "become_exe",
        "tags",
        "notify",
        "listen",
        "vars",
        "environment",
        "delegate_to",
        "delegate_facts",
        "ignore_errors",
        "ignore_unreachable",
        "changed_when",
        "failed_when",
        "no_log",
        "run_once",
        "check_mode",
        "diff",
        "any_errors_fatal",
        "throttle",
        "timeout",
        "debugger",
        "connection",
        "async",
        "poll",
        "args",
        "module_defaults",
        "collections",
        "port",
        "remote_user",
        "local_action",
        "action",
        "block",
        "rescue",
        "always",
    ]
)
INCLUDE_TASKS = frozenset({"include_tasks", "import_tasks", "include"})
INCLUDE_ROLE = frozenset({"include_role", "import_role"})
# Folders beside a playbook that Ansible loads whole, by name or implicitly.
ADJACENT_WHOLE = ("group_vars", "host_vars", "library", "module_utils")
# Lookups that read controller files, and the folder each searches.
FILE_LOOKUPS = {"file": "files", "fileglob": "files", "first_found": "files", "template": "templates",
                "unvault": "files", "ini": "files", "csvfile": "files"}  # fmt: skip
LOOKUP_RE = re.compile(
    r"""(?:lookup|query|q)\(\s*['"](?:ansible\.builtin\.|ansible\.legacy\.)?(\w+)['"]\s*,\s*(?:(['"])(.*?)\2|([^'")\s,][^,)]*))"""
)
WITH_RE = re.compile(r"^with_(\w+)$")
FQCN_RE = re.compile(r"\b([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.[a-z_][a-z0-9_]*")
JINJA_REF_RE = re.compile(r"""\{%-?\s*(?:include|import|extends|from)\s+['"]([^'"]+)['"]""")
STATIC_VARS_RE = re.compile(r"\{\{\s*(playbook_dir|role_path)\s*\}\}")
# Modules whose `src` is a file on the controller (by default); elsewhere `src` is the target's.
CONTROLLER_SRC = frozenset(
    {"template", "copy", "script", "unarchive", "synchronize", "patch", "win_template", "win_copy"}
)
# What a role or collection carries for its developers, not for plays: never read by Ansible
# (the read audit would say so), so editing them rebuilds nothing.
NOT_PLAYED = frozenset({".git", ".github", ".gitlab", "molecule", "tests", "docs", "changelogs", ".ansible-lint",
                        ".yamllint", ".gitignore", ".travis.yml", "tox.ini", ".pre-commit-config.yaml"})  # fmt: skip
NOT_PLAYED_PREFIXES = ("README", "LICENSE", "CHANGELOG", "CONTRIBUTING", "COPYING")
TEXT_SUFFIXES = (".yml", ".yaml", ".j2", ".json", ".cfg", ".ini", ".conf", ".txt", "")


def templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def short_name(action: str) -> str:
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if action.startswith(prefix):
            return action[len(prefix) :]
    return action


def listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def names_of(value: Any) -> tuple[str, ...]:
    return tuple(str(c) for c in listed(value) if isinstance(c, str))


def normalized(path: Path) -> str:
    import os

    return os.path.normpath(path)


def first_file(folder: Path, stem: str) -> Path | None:
    for suffix in (".yml", ".yaml", ""):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def role_refs(items: Any) -> list[str]:
    names: list[str] = []
    for item in listed(items):
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            name = item.get("role") or item.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def task_action(task: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The task's module and its arguments, whichever of Ansible's spellings it uses."""
    for key in ("action", "local_action"):
        if key in task:
            value = task[key]
            if isinstance(value, dict):
                module = str(value.get("module", ""))
                return module or None, {k: v for k, v in value.items() if k != "module"}
            words = str(value).split(None, 1)
            return (words[0], free_form_args(words[1] if len(words) > 1 else "")) if words else (None, {})
    for key, value in task.items():
        if key in TASK_KEYWORDS or str(key).startswith("with_"):
            continue
        args = dict(value) if isinstance(value, dict) else free_form_args(str(value)) if value is not None else {}
        if isinstance(task.get("args"), dict):
            args = {**task["args"], **args}
        return str(key), args
    return None, {}


def free_form_args(text: str) -> dict[str, Any]:
    """`src=a dest=b` or a free-form argument (include_tasks: x.yml)."""
    import shlex

    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    args: dict[str, Any] = {}
    raw = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and key.isidentifier():
            args[key] = value
        else:
            raw.append(word)
    if raw:
        args["_raw_params"] = " ".join(raw)
    return args
