"""Ansible collections as the scanner sees them: where each one is on the collections path,
its version and dependencies from its own metadata, and the ones bundled with Ansible."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.errors import KilnError
from tasks.inputs.ansible_layout import Layout
from tasks.inputs.yaml_files import load_yaml


@dataclass
class Collection:
    name: str
    path: Path
    version: str
    where: str  # what put it there: "requirements.yml", "provision/ansible/collections", ...


def collections_on_path(layout: Layout, shown: Callable[[Path], str]) -> dict[str, Collection]:
    """Every collection on the collections path by name: the first on the path wins, as in Ansible."""
    found: dict[str, Collection] = {}
    for entry in layout.collections_path:
        base = entry if entry.name == "ansible_collections" else entry / "ansible_collections"
        if not base.is_dir():
            continue
        where = "requirements.yml" if layout.installed and entry.is_relative_to(layout.installed) else shown(entry)
        for ns in sorted(p for p in base.iterdir() if p.is_dir()):
            for coll in sorted(p for p in ns.iterdir() if p.is_dir()):
                name = f"{ns.name}.{coll.name}"
                if name not in found:
                    found[name] = Collection(name, coll, collection_version(coll), where)
    return found


def bundled_version(bundled: Path | None, name: str) -> str:
    """The version of a collection that ships with the ansible package ("" if it is not one)."""
    if bundled is None or "." not in name:
        return ""
    ns, coll = name.split(".", 1)
    path = bundled / ns / coll
    return collection_version(path) if path.is_dir() else ""


def collection_version(path: Path) -> str:
    for name in ("MANIFEST.json", "galaxy.yml"):
        f = path / name
        if f.is_file():
            try:
                if name.endswith(".json"):
                    return str(json.loads(f.read_text())["collection_info"]["version"])
                data = load_yaml(f, str(f))
                return str(data.get("version", "")) if isinstance(data, dict) else ""
            except (KeyError, ValueError, OSError, KilnError):
                return ""
    return ""


def collection_deps(path: Path) -> list[str]:
    deps: Any = {}
    manifest, galaxy = path / "MANIFEST.json", path / "galaxy.yml"
    try:
        if manifest.is_file():
            deps = json.loads(manifest.read_text()).get("collection_info", {}).get("dependencies") or {}
        elif galaxy.is_file():
            data = load_yaml(galaxy, str(galaxy))
            deps = data.get("dependencies") or {} if isinstance(data, dict) else {}
    except (ValueError, OSError, KilnError):
        deps = {}
    return sorted(str(d) for d in deps) if isinstance(deps, dict) else []
