"""A role's verify play: run after the role's play on the same machine, before the image exists.

In a chroot (provider=local, and `doit verify` against a layer or the sandbox's target) kiln runs
it itself; in Packer it is the template's second Ansible provisioner, and a failure is read back
from Packer's log. Either way a failure is one line naming the verify file and the failing task.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.build.rootfs import PlayFailed, failed_step, failed_task, run_play
from tasks.errors import BuildFailed

# The build row's status of an image its verify play refused.
STATUS = "verify failed"


class VerifyFailed(BuildFailed):
    def __init__(self, verify: str, step: str, log: str, task: str) -> None:
        super().__init__(f"{verify}: verify failed in {step}", log)
        self.task = task


def run_verify(
    tree: Path, root: Path, verify: str, extra: dict[str, str], env: dict[str, str], log: Path, label: str
) -> None:
    """The verify play through the chroot connection, as the role's play ran."""
    try:
        run_play(tree, root / verify, extra, env, log, label)
    except PlayFailed as err:
        step = err.plain.split(" failed in ", 1)[-1]
        raise VerifyFailed(verify, step, str(log), err.task) from None


_PREFIX = re.compile(r"^\s*(==> )?[\w.-]+\.[\w.-]+: ?")


def packer_lines(log: Path) -> list[str]:
    """What Packer printed, from its machine-readable log, without the build-name prefix."""
    out: list[str] = []
    try:
        raw = log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in raw:
        fields = line.split(",", 4)
        if len(fields) < 5 or fields[2] != "ui":
            continue
        text = fields[4].replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")
        out.extend(_PREFIX.sub("", sub) for sub in text.splitlines())
    return out


def packer_verify_failure(log: Path, verify: str) -> VerifyFailed | None:
    """A failed Packer build whose verify provisioner was the one that failed: the verify play
    is the template's last Ansible provisioner, so the second `Executing Ansible` (or one naming
    the verify file) starts it; a failure after it is the verify play's."""
    lines = packer_lines(log)
    starts = [n for n, ln in enumerate(lines) if "Executing Ansible" in ln]
    named = [n for n in starts if verify in lines[n]]
    begin = named[-1] if named else (starts[1] if len(starts) >= 2 else None)
    if begin is None:
        return None
    after = lines[begin:]
    if not any(ln.startswith(("fatal:", "failed:")) or "ERROR!" in ln for ln in after):
        return None
    return VerifyFailed(verify, failed_step(after), str(log), failed_task(after))
