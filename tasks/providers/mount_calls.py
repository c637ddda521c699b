"""mount(2) and umount2(2) called directly. A play's tree takes four mounts and as many unmounts;
through mount(8) each is a process (about 8 ms here), which the edit loop pays before and after
every play. Errors are OSError with the kernel's errno, naming the mount point."""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

MS_RDONLY = 1
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MNT_DETACH = 2


@functools.cache
def _libc() -> ctypes.CDLL:
    # Named, not found: ctypes.util.find_library runs ldconfig, slower than the mounts it saves.
    return ctypes.CDLL("libc.so.6", use_errno=True)


def _b(text: str | Path | None) -> bytes | None:
    return None if text is None else str(text).encode()


def mount(source: str | None, target: Path, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc().mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def unmount(target: str | Path, detach: bool = True) -> None:
    if _libc().umount2(_b(target), MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))
