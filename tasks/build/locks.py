"""One build of an image at a time on this machine: a file lock per fingerprint.

A second kiln run asked for the same image waits (and says so), then finds the first run's
image instead of building it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.errors import KilnError


@contextlib.contextmanager
def image_lock(state: Path, name: str, on_wait: Callable[[str], None]) -> Iterator[bool]:
    """Hold the lock for `name`; yields True if another run held it first (so look again)."""
    locks = state / "locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
        fh = (locks / f"{name}.lock").open("a+")
    except OSError as err:
        raise KilnError(f"{locks}: cannot write kiln's state folder: {err.strerror}") from None
    with fh:
        waited = False
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another kiln run"
            on_wait(f"waiting for {holder}, which is building the same image")
            fcntl.flock(fh, fcntl.LOCK_EX)
            waited = True
        fh.seek(0)
        fh.truncate()
        fh.write(f"kiln pid {os.getpid()}\n")
        fh.flush()
        try:
            yield waited
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)
