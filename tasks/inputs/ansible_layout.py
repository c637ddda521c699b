"""Where Ansible looks, for one playbook directory: its ansible.cfg (the one kiln hands every
play), the roles path and collections path it names, plus what requirements.yml installed.

kiln sets these paths explicitly for every play, so the user's ~/.ansible and the machine's
/usr/share/ansible never decide an image's content: the same catalog builds the same image on
every machine.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import KilnError

# ansible.cfg keys that name plugin folders; Ansible also looks beside the playbook.
PLUGIN_KEYS = (
    "library",
    "module_utils",
    "action_plugins",
    "become_plugins",
    "cache_plugins",
    "callback_plugins",
    "cliconf_plugins",
    "connection_plugins",
    "doc_fragment_plugins",
    "filter_plugins",
    "httpapi_plugins",
    "inventory_plugins",
    "lookup_plugins",
    "netconf_plugins",
    "strategy_plugins",
    "terminal_plugins",
    "test_plugins",
    "vars_plugins",
)


@dataclass(frozen=True)
class Layout:
    root: Path  # the repository
    playbook_dir: Path
    config: Path | None  # ansible.cfg beside the playbook
    roles_path: tuple[Path, ...]  # ansible.cfg's roles_path, then requirements' roles
    collections_path: tuple[Path, ...]  # adjacent collections/, ansible.cfg's, requirements'
    plugin_dirs: tuple[Path, ...]  # named by ansible.cfg
    installed: Path | None = None  # the requirements install folder, if any
    empty_config: Path | None = None  # handed to Ansible when the playbook has no ansible.cfg

    def env(self) -> dict[str, str]:
        """The environment every play of this playbook runs with, on every provider."""
        env = {
            "ANSIBLE_ROLES_PATH": os.pathsep.join(str(p) for p in self.roles_path),
            "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(str(p) for p in self.collections_path),
        }
        if self.config is not None:
            # Ansible reads ansible.cfg from its working directory, which is Packer's or kiln's.
            env["ANSIBLE_CONFIG"] = str(self.config)
        elif self.empty_config is not None:
            env["ANSIBLE_CONFIG"] = str(self.empty_config)  # never /etc/ansible or ~/.ansible.cfg
        return env


def _paths(value: str, base: Path) -> list[Path]:
    out = []
    for item in value.split(os.pathsep):
        item = item.strip()
        if item:
            path = Path(os.path.expanduser(item))
            out.append(path if path.is_absolute() else (base / path))
    return [Path(os.path.normpath(p)) for p in out]


def read_config(path: Path, shown: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(), source=shown)
    except configparser.Error as err:
        line = getattr(err, "lineno", None)
        raise KilnError(f"{shown}{f':{line}' if line else ''}: not a valid ansible.cfg: {err.message}") from None
    if not parser.has_section("defaults"):
        return {}
    return dict(parser.items("defaults"))


def layout_for(root: Path, playbook_dir: Path, installed: Path | None, empty_config: Path | None = None) -> Layout:
    cfg = playbook_dir / "ansible.cfg"
    settings: dict[str, str] = {}
    shown = str(cfg.relative_to(root)) if cfg.is_relative_to(root) else str(cfg)
    if cfg.is_file():
        settings = read_config(cfg, shown)
    roles = _paths(settings.get("roles_path", ""), playbook_dir)
    # collections_paths is the older spelling Ansible still reads.
    colls = _paths(settings.get("collections_path", settings.get("collections_paths", "")), playbook_dir)
    plugins: list[Path] = []
    for key in PLUGIN_KEYS:
        plugins += _paths(settings.get(key, ""), playbook_dir)
    if installed is not None:
        roles.append(installed / "roles")
        colls.append(installed / "collections")
    adjacent = playbook_dir / "collections"
    return Layout(
        root=root,
        playbook_dir=playbook_dir,
        config=cfg if cfg.is_file() else None,
        roles_path=tuple(roles),
        collections_path=(adjacent, *colls),
        plugin_dirs=tuple(plugins),
        installed=installed,
        empty_config=empty_config,
    )


def bundled_collections() -> Path | None:
    """The collections that come with the `ansible` package: tool versions, not content."""
    for entry in sys.path:
        candidate = Path(entry) / "ansible_collections"
        if entry and candidate.is_dir() and (Path(entry) / "ansible").is_dir():
            return candidate
    return None
