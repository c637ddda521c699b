"""The Packer binary on PATH and its version (Debian's 1.6.6 is the floor)."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache

from tasks.errors import KilnError

MIN_VERSION = (1, 6, 6)
# From 1.7 Packer reads `required_plugins` and installs plugins with `packer init` (1.6.6
# rejects the block; from 1.10 nothing is bundled, so a template without it cannot build).
PLUGINS_FROM = (1, 7, 0)


@cache
def packer_path() -> str:
    path = shutil.which("packer")
    if path is None:
        raise KilnError(
            "packer: not found on PATH; install it (Debian: apt-get install packer, or HashiCorp's release)"
        )
    return path


@cache
def packer_version() -> str:
    proc = subprocess.run([packer_path(), "version"], capture_output=True, text=True, check=False)
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise KilnError(f"packer: '{packer_path()} version' did not print a version; reinstall Packer")
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if version < MIN_VERSION:
        floor = ".".join(map(str, MIN_VERSION))
        raise KilnError(f"packer: {packer_path()} is version {match.group(0)}; kiln needs {floor} or newer")
    return ".".join(map(str, version))


def packer_version_tuple() -> tuple[int, int, int]:
    major, minor, patch = (int(x) for x in packer_version().split("."))
    return major, minor, patch


def uses_plugins() -> bool:
    """Whether this Packer gets a `required_plugins` block and `packer init` before a build."""
    return packer_version_tuple() >= PLUGINS_FROM
