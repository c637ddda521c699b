"""One image task's request (Job) and one build decided in full (Spec): plain values the build
stage's modules pass each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tasks.models import ImageKey


class PendingChecks(Protocol):
    """Syntax checks running beside a play (tasks/checks/beside.py)."""

    def wait(self) -> None:
        """Raises the first finding (KilnError, exit 3)."""

    def cancel(self) -> None: ...


@dataclass(frozen=True)
class Job:
    """What the command line asks of one image task."""

    forced: bool = False
    playbook: str | None = None  # the role's, or playbook=PATH for a named role
    override: bool = False  # playbook is playbook=PATH
    debug: bool = False  # debug=1 and this role named


@dataclass(frozen=True)
class Spec:
    """One build, decided: what it is called, what it starts from, where it logs."""

    key: ImageKey
    job: Job
    fp: str
    manifest: dict[str, Any]
    name: str
    stamp: str
    source: str
    tags: dict[str, str]  # every tag but the fingerprint, which is the commit point
    log: Path
    customer: str
    place: str  # provider/customer/distro/region/role, for the work and log folders
