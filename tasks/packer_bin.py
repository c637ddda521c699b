"""The Packer binary on PATH and its version (Debian's 1.6.6 is the floor)."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache

from .errors import KilnError

MIN_VERSION = (1, 6, 6)


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
    version = tuple(int(x) for x in match.groups())
    if version < MIN_VERSION:
        floor = ".".join(map(str, MIN_VERSION))
        raise KilnError(f"packer: {packer_path()} is version {match.group(0)}; kiln needs {floor} or newer")
    return ".".join(map(str, version))
