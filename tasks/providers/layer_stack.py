"""Where a provider=local layer's files are: its own directory alone (a full copy), or, for an
overlay layer, its upper directory over its parent's stack, down to the debootstrap tree.

An overlay layer's directory holds `layer.json` (what it sits on), `upper/` (what its play
changed), `work/` (overlayfs's own) and `root/` (the mount point, empty unless mounted). The
base tree is named with its completion marker's time: a tree made again under the same name
is another base, and the layers made on the old one are no longer whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

LAYER_FILE = "layer.json"


@dataclass(frozen=True)
class Lower:
    """What an overlay layer sits on: a parent layer, or (parent "") the debootstrap tree."""

    parent: str = ""
    base: str = ""  # the cache tree's name, e.g. bookworm-minbase
    made: int = 0  # its completion marker's mtime_ns


def is_overlay(layer: Path) -> bool:
    return (layer / LAYER_FILE).is_file()


def read_lower(layer: Path) -> Lower | None:
    try:
        data = json.loads((layer / LAYER_FILE).read_text())
        return Lower(str(data.get("parent", "")), str(data.get("base", "")), int(data.get("made", 0)))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_lower(layer: Path, lower: Lower) -> None:
    record = {"parent": lower.parent, "base": lower.base, "made": lower.made}
    (layer / LAYER_FILE).write_text(json.dumps(record, sort_keys=True) + "\n")


def base_lower(cache: Path, tree: Path) -> Lower:
    marker = cache / f"{tree.name}.complete"
    return Lower(base=tree.name, made=marker.stat().st_mtime_ns)


class Broken(Exception):
    """A layer whose stack is not whole: a parent or the base tree is gone or was made again."""


def stack(layers: Path, cache: Path, layer: Path) -> list[Path]:
    """The directories that make the layer's tree, top first (overlayfs's lowerdir order)."""
    out: list[Path] = []
    seen: set[Path] = set()
    here = layer
    while True:
        if here in seen:
            raise Broken(f"{here}: its layers form a loop")
        seen.add(here)
        if not here.is_dir():
            raise Broken(f"{here} is gone")
        if not is_overlay(here):
            return [*out, here]  # a full copy: the bottom of the stack
        lower = read_lower(here)
        if lower is None:
            raise Broken(f"{here / LAYER_FILE} cannot be read")
        out.append(here / "upper")
        if lower.parent:
            here = layers / lower.parent
            continue
        tree, marker = cache / lower.base, cache / f"{lower.base}.complete"
        try:
            made = marker.stat().st_mtime_ns
        except OSError:
            raise Broken(f"the base tree {tree} is gone") from None
        if made != lower.made or not tree.is_dir():
            raise Broken(f"the base tree {tree} was made again after {layer.name}")
        return [*out, tree]


def whole(layers: Path, cache: Path, layer: Path) -> bool:
    try:
        stack(layers, cache, layer)
    except Broken:
        return False
    return True


def ancestors(layers: Path, layer: str) -> list[str]:
    """The layers it sits on, nearest first (as far as they are there)."""
    out: list[str] = []
    here = layers / layer
    while (lower := read_lower(here)) is not None and lower.parent and lower.parent not in out:
        out.append(lower.parent)
        here = layers / lower.parent
    return out


def children(layers: Path) -> dict[str, list[str]]:
    """layer -> the layers (committed, failed or unfinished) that sit directly on it."""
    out: dict[str, list[str]] = {}
    for path in sorted(layers.iterdir()) if layers.is_dir() else []:
        lower = read_lower(path) if path.is_dir() else None
        if lower is not None and lower.parent:
            out.setdefault(lower.parent, []).append(path.name)
    return out
