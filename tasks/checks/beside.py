"""The syntax checks of a provider=local build, run beside its play instead of before it: the
edit loop waits for the play alone. A finding still stops the build before its layer is
committed (exit 3, the same line as `doit lint`'s), and a playbook that passed with its inputs
as they are is not checked again. Nothing is spent on provider=local, so nothing is lost by
starting the play first; the cloud providers keep checking before they launch anything."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.checks.lint import inputs_state, passed_as_is, syntax_command, syntax_result

if TYPE_CHECKING:
    from tasks.catalog.load import Catalog


@dataclass
class ChecksBeside:
    """The running checks of one build (see tasks/build/spec.py's PendingChecks)."""

    catalog: Catalog
    state: Path
    running: list[tuple[str, str, subprocess.Popen[str]]] = field(default_factory=list)

    def wait(self) -> None:
        """Each check's result, the first finding raised."""
        try:
            for playbook, checked, proc in self.running:
                output, _ = proc.communicate()
                syntax_result(self.catalog, self.state, playbook, proc.returncode, output, checked)
        finally:
            self.cancel()

    def cancel(self) -> None:
        for _, _, proc in self.running:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait()
        self.running = []


def start(
    catalog: Catalog, state: Path, playbooks: list[str], env_of: Callable[[str], dict[str, str]]
) -> ChecksBeside:
    checks = ChecksBeside(catalog, state)
    for playbook in dict.fromkeys(playbooks):
        if passed_as_is(catalog.root, state, playbook):
            continue
        cmd, env, cwd = syntax_command(catalog, state, playbook, env_of(playbook))
        checked = inputs_state(catalog.root, playbook)
        proc = subprocess.Popen(
            ["nice", "-n", "10", *cmd],  # the play comes first on a busy machine
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",  # Ansible echoes the playbook's bytes; any of them must not stop kiln
            start_new_session=True,  # Ctrl-C reaches the play; kiln ends the check itself
        )
        checks.running.append((playbook, checked, proc))
    return checks
