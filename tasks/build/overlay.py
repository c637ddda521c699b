"""Kernel overlayfs for provider=local: a layer's tree is mounted from its stack only while a
play runs in it or someone looks into it, so a new layer costs what its play writes.

The options are spelled out (no index, no metacopy, no directory redirects) so that an upper
directory made here can later be any mount's lower directory, whatever the kernel's defaults.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tasks.errors import KilnError
from tasks.providers.mount_calls import MS_RDONLY
from tasks.providers.mount_calls import mount as mount_call
from tasks.providers.tree_release import mounts_under, release

OPTIONS = "index=off,metacopy=off,redirect_dir=off"


class Refused(KilnError):
    """The kernel would not mount the overlay (no overlayfs, or a filesystem it refuses)."""


def _why(stderr: str) -> str:
    """The kernel's own reason when its log can be read (mount(8) only says 'wrong fs type')."""
    proc = subprocess.run(["dmesg"], capture_output=True, text=True, check=False)
    said = [ln.split("]", 1)[-1].strip() for ln in proc.stdout.splitlines() if "overlay" in ln]
    return said[-1] if said else (stderr.strip().splitlines() or ["mount failed"])[0]


def mount(lowers: list[Path], upper: Path | None, work: Path | None, at: Path) -> None:
    """lowers top first; without an upper directory the mount is read-only."""
    opts = f"lowerdir={':'.join(str(p) for p in lowers)},{OPTIONS}"
    if upper is not None and work is not None:
        opts += f",upperdir={upper},workdir={work}"
    flags = 0 if upper is not None and work is not None else MS_RDONLY
    try:
        mount_call("overlay", at, "overlay", flags, opts)
    except OSError as err:
        raise Refused(f"{at}: the kernel refused an overlay mount ({_why(err.strerror or str(err))})") from None


def unmount(at: Path) -> None:
    """Everything rooted or mounted in the tree let go of, then the overlay itself."""
    release(at)
    if mounts_under(at):
        raise KilnError(f"{at}: the overlay could not be unmounted; unmount it by hand (umount -l {at})")


@contextlib.contextmanager
def mounted_at(lowers: list[Path], upper: Path | None, work: Path | None, at: Path) -> Iterator[Path]:
    at.mkdir(parents=True, exist_ok=True)
    mount(lowers, upper, work, at)
    try:
        yield at
    finally:
        unmount(at)


def refusal(where: Path) -> str | None:
    """Why overlay layers cannot be made in this folder, or None when they can (a real mount
    of a tiny overlay, a few milliseconds)."""
    probe = where / f".overlay-probe.{os.getpid()}"
    shutil.rmtree(probe, ignore_errors=True)
    try:
        for d in ("lower", "upper", "work", "root"):
            (probe / d).mkdir(parents=True)
        (probe / "lower" / "file").write_text("x")
        with mounted_at([probe / "lower"], probe / "upper", probe / "work", probe / "root") as root:
            (root / "file").unlink()  # a whiteout: the upper filesystem must take them
            (root / "new").write_text("y")
        return None
    except (KilnError, OSError) as err:
        return str(err).split(": ", 1)[-1]
    finally:
        with contextlib.suppress(OSError):
            release(probe)
        shutil.rmtree(probe, ignore_errors=True)


@contextlib.contextmanager
def scratch_view(lowers: list[Path], work: Path) -> Iterator[Path]:
    """The tree seen through an overlay whose upper directory is thrown away afterwards: looking
    into a committed layer (a verify play, a shell) never changes it."""
    release(work)
    shutil.rmtree(work, ignore_errors=True)
    upper, scratch = work / "upper", work / "work"
    upper.mkdir(parents=True)
    scratch.mkdir()
    try:
        with mounted_at(lowers, upper, scratch, work / "root") as root:
            yield root
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- what a play really changed --------------------------------------------------------------


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid, a.st_size) == (b.st_mode, b.st_uid, b.st_gid, b.st_size)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        return {k: os.getxattr(path, k, follow_symlinks=False) for k in os.listxattr(path, follow_symlinks=False)}
    except OSError:
        return {}


def _hides(layer: Path, rel: str) -> bool:
    """Whether the layer hides what is below it at rel: an ancestor of rel there is deleted
    (a whiteout) or was made anew (an opaque directory)."""
    parts = rel.split(os.sep)[:-1]
    return any(_hides_at(str(layer), os.path.join(*parts[:n])) for n in range(1, len(parts) + 1))


@functools.lru_cache(maxsize=65536)
def _hides_at(layer: str, rel_dir: str) -> bool:
    path = os.path.join(layer, rel_dir)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    return stat.S_ISDIR(st.st_mode) and _xattrs(path).get("trusted.overlay.opaque") == b"y"


def _below(upper: Path, lowers: list[Path], rel: str) -> str | None:
    """The path's entry in the stack under the upper directory, or None where there is none."""
    if _hides(upper, rel):
        return None
    for layer in lowers:
        path = os.path.join(layer, rel)
        try:
            st = os.lstat(path)
        except OSError:
            if _hides(layer, rel):
                return None
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # deleted in that layer
        return path
    return None


def _identical(upper: str, lower: str) -> bool:
    a, b = os.lstat(upper), os.lstat(lower)
    if not _same_file(a, b) or a.st_nlink > 1:
        return False
    ours = {k: v for k, v in _xattrs(upper).items() if not k.startswith("trusted.overlay.")}
    if ours != {k: v for k, v in _xattrs(lower).items() if not k.startswith("trusted.overlay.")}:
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(upper) == os.readlink(lower)
    if not stat.S_ISREG(a.st_mode):
        return False
    with open(upper, "rb") as fa, open(lower, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def squash(upper: Path, lowers: list[Path]) -> int:
    """Drop from an unmounted upper directory what is the same as below it: files copied up and
    put back as they were (kiln's stand-ins, the resolver it lends a play), whiteouts of
    nothing, and untouched directories left empty. Returns how many entries went."""
    _hides_at.cache_clear()  # the layers are read as they are now
    dropped = 0
    for here, dirs, files in os.walk(upper, topdown=False):
        rel_dir = os.path.relpath(here, upper)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(here, d))]:
            path = os.path.join(here, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(path)
            below = _below(upper, lowers, rel)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                if below is None:  # a whiteout of a file no lower layer has
                    os.unlink(path)
                    dropped += 1
            elif below is not None and _identical(path, below):
                os.unlink(path)
                dropped += 1
        if here == str(upper) or os.listdir(here):
            continue
        below = _below(upper, lowers, rel_dir)
        if below is None or not os.path.isdir(below) or "trusted.overlay.opaque" in _xattrs(here):
            continue
        a, b = os.lstat(here), os.lstat(below)
        if (a.st_mode, a.st_uid, a.st_gid) == (b.st_mode, b.st_uid, b.st_gid):
            os.rmdir(here)
            dropped += 1
    return dropped
