"""A build's trail: what Packer made for it, noted the moment Packer says so, so that the next
run can remove it if kiln is killed (tasks/build/dead_builds.py).

Packer's machine-readable lines name each resource as it creates it: the temporary key pair
and security group (before the instance exists), the instance, the image. Each is appended to
`trail` in the build's working folder (`.kiln/work/...`, kept until the next build of the same
image starts) and synced to disk at once: a kill at any instant leaves at most the one
resource Packer was creating unknown, and that one is found by `doit cleanup`.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

FILE = "trail"
# What Packer 1.6.6's amazon-ebs says (ui say/message lines), and what it is.
PATTERNS = (
    ("key pair", re.compile(r"Creating temporary keypair: (\S+)")),
    ("security group", re.compile(r"Creating temporary security group for this instance: (\S+)")),
    ("instance", re.compile(r"Instance ID: (i-[0-9a-f]+)")),
    ("image", re.compile(r"AMI: (ami-[0-9a-f]+)")),
)


def note(workdir: Path, text: str) -> None:
    """Append what this Packer line says was created, if anything."""
    for kind, pattern in PATTERNS:
        m = pattern.search(text)
        if m:
            with contextlib.suppress(OSError), (workdir / FILE).open("a") as fh:
                fh.write(f"{kind} {m.group(1)}\n")
                fh.flush()
                os.fsync(fh.fileno())
            return


def read(workdir: Path) -> dict[str, list[str]]:
    """kind -> names, in the order Packer made them."""
    out: dict[str, list[str]] = {}
    try:
        lines = (workdir / FILE).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        kind, _, value = line.rpartition(" ")
        if kind and value:
            out.setdefault(kind, []).append(value)
    return out
