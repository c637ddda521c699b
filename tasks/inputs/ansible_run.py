"""One run's view of the catalog's Ansible content: for each playbook, where Ansible looks (its
layout, with requirements installed) and what the playbook reads. Each playbook is scanned once
per run, however many images use it; each file is parsed once per content."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.inputs.ansible_inputs import playbook_inputs
from tasks.inputs.ansible_layout import Layout, layout_for
from tasks.inputs.galaxy import installed_requirements
from tasks.inputs.play_inputs import PlayInputs


@dataclass(frozen=True)
class Play:
    layout: Layout
    inputs: PlayInputs

    def key(self, path: Path) -> str:
        """A file's name in the manifest: the same on every machine and checkout."""
        installed = self.layout.installed
        if installed is not None and path.is_relative_to(installed):
            return f"requirements:{path.relative_to(installed)}"
        if path.is_relative_to(self.layout.root):
            return str(path.relative_to(self.layout.root))
        return str(path)

    def path_of(self, name: str) -> Path:
        installed = self.layout.installed
        if name.startswith("requirements:") and installed is not None:
            return installed / name.removeprefix("requirements:")
        return self.layout.root / name

    def watched(self) -> list[Path]:
        """Where the read audit looks: the repository and every Ansible path outside it."""
        out = [self.layout.root]
        for p in (*self.layout.roles_path, *self.layout.collections_path, *self.layout.plugin_dirs):
            if not any(p.is_relative_to(w) for w in out):
                out.append(p)
        return out


class AnsibleContent:
    def __init__(self, root: Path, state: Path, say: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.state = state
        self.say = say
        self._plays: dict[str, Play] = {}
        self._layouts: dict[Path, Layout] = {}
        self._said: set[str] = set()  # playbooks whose notes were said
        self._lock = threading.RLock()

    def _empty_config(self) -> Path:
        path = self.state / "ansible" / "empty-ansible.cfg"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "# kiln: the playbook has no ansible.cfg; Ansible's defaults, not this machine's\n[defaults]\n"
            )
        return path

    def layout(self, playbook: str) -> Layout:
        """Where Ansible looks for this playbook, requirements installed: no playbook parsed."""
        folder = (self.root / playbook).parent
        with self._lock:
            if folder not in self._layouts:
                installed = installed_requirements(self.root, self.state, folder, self.say)
                self._layouts[folder] = layout_for(self.root, folder, installed, self._empty_config())
            return self._layouts[folder]

    def play(self, playbook: str) -> Play:
        with self._lock:
            if playbook not in self._plays:
                layout = self.layout(playbook)
                self._plays[playbook] = Play(layout, playbook_inputs(layout, self.root / playbook))
            return self._plays[playbook]

    def verify_play(self, verify: str, playbook: str) -> Play:
        """A role's verify play, scanned like a playbook but in the layout of the role's play:
        it runs beside that play, with the same roles, collections and ansible.cfg."""
        with self._lock:
            name = f"verify:{verify}:{playbook}"
            if name not in self._plays:
                layout = self.layout(playbook)
                self._plays[name] = Play(layout, playbook_inputs(layout, self.root / verify))
            return self._plays[name]

    def say_notes(self, playbook: str) -> None:
        """Once per run and playbook, when an image of it is built: what kiln took whole."""
        with self._lock:
            if playbook in self._said or self.say is None:
                return
            self._said.add(playbook)
        for note in self.play(playbook).inputs.notes(self.root):
            self.say(note)
