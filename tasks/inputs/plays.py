"""What a play is handed wherever it runs (where Ansible looks, the read audit) and, after it,
the files it read that are not among the image's inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.inputs.ansible_run import AnsibleContent


def reads_file(log: Path) -> Path:
    return log.with_suffix(".reads")


class Plays:
    def __init__(self, ansible: AnsibleContent, root: Path, state: Path, say: Callable[[str], None]) -> None:
        self.ansible = ansible
        self.root = root
        self.state = state
        self.say = say

    def env(self, playbook: str, log: Path) -> dict[str, str]:
        """Where Ansible looks (the same on every provider) and the read audit, for one play."""
        from tasks.inputs.audit import audit_env

        self.ansible.say_notes(playbook)
        play = self.ansible.play(playbook)
        return {**play.layout.env(), **audit_env(reads_file(log), play.watched())}

    def layout_env(self, playbook: str) -> dict[str, str]:
        return self.ansible.play(playbook).layout.env()

    def ansible_local_vars(self, playbook: str, workdir: Path) -> dict[str, str]:
        """ansible-local runs on the instance from an uploaded copy of provision/ansible: the
        requirements go up too, and the roles path is said relative to that copy."""
        play = self.ansible.play(playbook)
        galaxy = play.layout.installed
        if galaxy is None:
            galaxy = workdir / "no-requirements"
            for sub in ("roles", "collections"):
                (galaxy / sub).mkdir(parents=True, exist_ok=True)
        ansible_dir = self.root / "provision" / "ansible"
        roles = [str(p.relative_to(ansible_dir)) for p in play.layout.roles_path if p.is_relative_to(ansible_dir)]
        remote = "/tmp/kiln-galaxy"
        command = (
            f"ANSIBLE_ROLES_PATH={':'.join([*roles, remote + '/roles'])}"
            f" ANSIBLE_COLLECTIONS_PATH={remote}/collections ANSIBLE_FORCE_COLOR=1 PYTHONUNBUFFERED=1 ansible-playbook"
        )
        return {"galaxy_dir": str(galaxy), "ansible_local_command": command}

    def missed_reads(self, label: str, role: str, playbook: str, log: Path, manifest: dict[str, Any]) -> list[str]:
        """Files the play opened that are not among the image's inputs, each said once."""
        from tasks.inputs.audit import ignored, read_files

        play = self.ansible.play(playbook)
        keep = [play.layout.installed] if play.layout.installed is not None else []
        read = read_files(reads_file(log), ignored(self.root, self.state), keep)
        known = {play.path_of(name) for name in manifest.get("files", {})}
        missed = [play.key(p) for p in read if p not in known]
        for name in missed:
            self.say(
                f"warning: {label}: the play read {name}, which is not an input of role {role}:"
                f" a change to it would not rebuild the image (recorded; doit why {role} shows it)"
            )
        return missed
