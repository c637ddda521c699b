"""The plain values handed from stage to stage: which image (a key) and what the command line
asked (the options). Data only; every stage may import this module, and it imports none."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageKey:
    role: str
    distro: str
    region: str

    @property
    def task(self) -> str:
        return f"{self.role}:{self.distro}@{self.region}"

    @property
    def label(self) -> str:
        return f"{self.role}/{self.distro}/{self.region}"


@dataclass(frozen=True)
class Options:
    """The command line's variables, checked (tasks/cli/options.py reads them)."""

    provider: str
    customer: str
    distros: tuple[str, ...]
    regions: tuple[str, ...]
    force: str = "0"
    playbook: str | None = None
    debug: bool = False
    copy: bool = True
    provision: bool = False
    provenance: dict[str, str] = field(default_factory=dict)
