"""A root filesystem tree let go of: every process rooted in it stopped, every mount under it
released. Used by the local provider to drop a layer and by the builders after a play."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from tasks.providers.mount_calls import unmount


def mounts_under(tree: Path) -> list[str]:
    root = str(tree.resolve())
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found


def processes_in(tree: Path) -> list[int]:
    root = str(tree.resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "root") == root:
                    pids.append(int(entry.name))
    return pids


def release(tree: Path, keep_root: bool = False) -> None:
    """Stop every process rooted in the tree, then unmount everything under it, deepest first
    (with keep_root, not the tree itself: an overlay a play's mounts sit on)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = processes_in(tree)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = processes_in(tree)
            time.sleep(0.05)
    root = str(tree.resolve())
    for point in sorted(mounts_under(tree), key=len, reverse=True):
        if keep_root and point == root:
            continue
        with contextlib.suppress(OSError):  # gone already, or busy: what is left is reported by the caller
            unmount(point)
