"""Nothing of the image runs on the build host: while a play runs in a tree on this machine
(provider=local layers, the provisioned sandbox's targets), the tree shares the host's network
and clock, so the image's daemons are made inert the way Debian's chroot builders do it:

- `policy-rc.d` (exit 101) stops invoke-rc.d (rootfs.mounted writes it);
- `start-stop-daemon`, `service`, `systemctl` and `initctl` are diverted with dpkg-divert
  (so a package upgrade during the play puts the real file beside the stand-in, not over it)
  and replaced by stand-ins that report success and start nothing; systemctl passes the verbs
  that only change files (enable, disable, mask, daemon-reload, ...) to the real one, so the
  image is what it would be on AWS;
- processes in the tree run without CAP_SYS_TIME (`setpriv` drops it from their bounding and
  inheritable sets): an ntpd started anyway cannot step the host's clock;
- after the play, whatever is rooted in the tree and listens on a host port (/proc/net/tcp,
  tcp6, udp, udp6) is killed and named in one line; the sandbox target's own sshd (kiln's, not
  the image's) is spared.

Everything is restored before the tree becomes a layer or is imaged. What was diverted is
written into the tree first (`var/lib/kiln/inert.json`), so a kill at any moment leaves a tree
the next install restores before it starts again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

# Where each tool lives: the path dpkg knows wins (bookworm ships /sbin/start-stop-daemon,
# trixie /usr/sbin/...); merged /usr makes either reach the same file.
TOOLS = {
    "start-stop-daemon": ("/sbin/start-stop-daemon", "/usr/sbin/start-stop-daemon"),
    "service": ("/usr/sbin/service", "/sbin/service"),
    "systemctl": ("/bin/systemctl", "/usr/bin/systemctl"),
    "initctl": ("/sbin/initctl", "/usr/sbin/initctl"),
}
MARKER = "var/lib/kiln/inert.json"
REAL = ".kiln-real"
HEAD = "#!/bin/sh\n# kiln: daemons are inert while the image is built (tasks/build/inert_daemons.py)\n"
SAY = 'echo "kiln: $(basename "$0") $* ignored: no daemon starts while the image is built" >&2\n'

STAND_INS = {
    # --status asks whether it runs: it does not.
    "start-stop-daemon": HEAD + 'for a in "$@"; do case "$a" in -T|--status) exit 3;; esac; done\n' + SAY + "exit 0\n",
    "service": HEAD
    + 'case "$2" in status) echo "$1 is not running (kiln: inert while built)"; exit 3;; esac\n'
    + SAY
    + "exit 0\n",
    "systemctl": HEAD
    + 'verb=""\nfor a in "$@"; do case "$a" in -*) ;; *) verb=$a; break;; esac; done\n'
    + 'case "$verb" in\n'
    + "  start|stop|restart|reload|try-restart|reload-or-restart|try-reload-or-restart|condrestart|force-reload"
    + "|kill|isolate|reboot|poweroff|halt|daemon-reexec|reset-failed)\n"
    + "    "
    + SAY
    + "    exit 0;;\n"
    + "  is-active|is-failed) echo inactive; exit 3;;\n"
    + "  status) echo 'kiln: nothing runs while the image is built'; exit 3;;\n"
    + "esac\n"
    + 'real="$0.kiln-real"\n[ -x "$real" ] && exec "$real" "$@"\nexit 0\n',
    "initctl": HEAD + SAY + "exit 0\n",
}

# CAP_SYS_TIME out of the bounding and inheritable sets: root in the tree keeps every other power.
NO_CLOCK = ["setpriv", "--bounding-set", "-sys_time", "--inh-caps", "-sys_time", "--"]


def no_clock(cmd: list[str]) -> list[str]:
    """cmd, run without the power to set the host's clock (as is when setpriv is missing)."""
    return [*NO_CLOCK, *cmd] if shutil.which("setpriv") else cmd


def chroot_exe(folder: Path) -> Path:
    """A `chroot` for Ansible's chroot connection (ansible_chroot_exe) that drops CAP_SYS_TIME."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "kiln-chroot"
    body = f'#!/bin/sh\nexec {" ".join(no_clock(["chroot"]))} "$@"\n'
    if not exe.exists() or exe.read_text() != body:
        tmp = exe.with_name(f".kiln-chroot.{os.getpid()}")
        tmp.write_text(body)
        tmp.chmod(0o755)
        tmp.replace(exe)
    return exe


def _paths_of(tree: Path) -> dict[str, str]:
    """Each tool's path as dpkg knows it (the first candidate when no package ships it): one
    pass over the package file lists, each searched as bytes."""
    wanted = [(name, path, f"\n{path}\n".encode()) for name, where in TOOLS.items() for path in where]
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for listing in (tree / "var/lib/dpkg/info").glob("*.list"):
            data = b"\n" + listing.read_bytes() + b"\n"
            for name, path, needle in wanted:
                if name not in found and needle in data:
                    found[name] = path
            if len(found) == len(TOOLS):
                break
    return {name: found.get(name, where[0]) for name, where in TOOLS.items()}


DIVERSIONS = "var/lib/dpkg/diversions"


def _divert(tree: Path, paths: list[str], add: bool) -> None:
    """Each real tool renamed aside and, where the tree has dpkg, its diversion recorded so a
    package upgraded by the play installs beside the stand-in. The record is written here, in
    dpkg's own format (three lines per diversion: the path, where it went, ':' for a local
    one): a chroot'd dpkg-divert per path cost 60 ms before every play. A path dpkg already
    diverts is only renamed. Removing takes out exactly the lines added, so the file is again
    what it was and an overlay layer does not keep a copy of it."""
    db = tree / DIVERSIONS
    try:
        text = db.read_text(errors="surrogateescape")
    except OSError:
        text = None  # no dpkg: plain renames
    if text is not None and text.count("\n") % 3 == 0:
        lines = text.splitlines()
        diverted = set(lines[0::3])
        ours = {p: f"{p}\n{p}{REAL}\n:\n" for p in paths}
        if add:
            added = "".join(entry for p, entry in ours.items() if p not in diverted)
            new = text + added
        else:
            new = "\n" + text  # an entry starts a line
            for entry in ours.values():
                new = new.replace(f"\n{entry}", "\n", 1)
            new = new[1:]
        if new != text:
            with db.open("w", errors="surrogateescape") as fh:  # in place: its owner and mode stay
                fh.write(new)
    for path in paths:
        here, real = tree / path.lstrip("/"), tree / f"{path.lstrip('/')}{REAL}"
        if add and (here.exists() or here.is_symlink()):
            here.rename(real)
        elif not add and (real.exists() or real.is_symlink()):
            real.replace(here)


def install(tree: Path) -> None:
    """Stand-ins in place (after restoring any a killed run left)."""
    restore(tree)
    paths = _paths_of(tree)
    marker = tree / MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(paths, indent=1))  # first: a kill from here on is restorable
    _divert(tree, list(paths.values()), add=True)
    for name, path in paths.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(STAND_INS[name])
        target.chmod(0o755)


def restore(tree: Path) -> None:
    """Every stand-in out, every real file back: the tree as the play left it."""
    marker = tree / MARKER
    try:
        paths: dict[str, str] = json.loads(marker.read_text())
    except (OSError, ValueError):
        return
    for path in paths.values():
        target = tree / path.lstrip("/")
        with contextlib.suppress(OSError):
            if target.is_file() and target.read_text(errors="replace").startswith(HEAD):
                target.unlink()
    _divert(tree, list(paths.values()), add=False)
    marker.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        marker.parent.rmdir()  # only if kiln's folder is empty


def stand_ins_left(tree: Path) -> list[str]:
    """Paths in the tree that still hold one of kiln's stand-ins (a built tree must have none)."""
    out = []
    for where in TOOLS.values():
        for path in where:
            target = tree / path.lstrip("/")
            with contextlib.suppress(OSError):
                if target.is_file() and target.read_text(errors="replace").startswith(HEAD):
                    out.append(path)
    return sorted(set(out))


# -- listeners on host ports ------------------------------------------------------------------


def _address(hex_addr: str) -> str:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in reversed(raw))
    else:  # four little-endian 32-bit words
        words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
        full = b"".join(words)
        ip = "[" + ":".join(full[i : i + 2].hex() for i in range(0, 16, 2)) + "]"
        ip = ip.replace("[0000:0000:0000:0000:0000:0000:0000:0000]", "[::]")
    return f"{ip}:{int(port, 16)}"


def _sockets() -> dict[str, str]:
    """socket inode -> 'address (proto)' of every listening TCP and every bound UDP socket."""
    out: dict[str, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 9 and (f[3] == "0A" if proto.startswith("tcp") else f[3] == "07"):
                    out[f[9]] = f"{_address(f[1])} ({proto})"
    return out


def listeners(tree: Path) -> list[tuple[int, str, str]]:
    """(pid, command, address) of processes rooted in the tree holding a host port."""
    root = str(tree.resolve())
    socks = _sockets()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "root") != root:
                continue
            comm = (entry / "comm").read_text().strip()
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in socks:
                        found.append((int(entry.name), comm, socks[link[8:-1]]))
    return sorted(set(found))


def stop_listeners(tree: Path, label: str, say: Callable[[str], None], keep: tuple[int, ...] = ()) -> int:
    """Kill what the play left listening on a host port; one line each. Returns how many."""
    stopped: set[int] = set()
    for pid, comm, addr in listeners(tree):
        if pid in keep:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if pid not in stopped:
            say(
                f"{label}: the play left {comm} (pid {pid}) listening on host port {addr} from inside the tree; killed it"
            )
        stopped.add(pid)
    return len(stopped)


@contextlib.contextmanager
def checked(tree: Path, label: str, say: Callable[[str], None], keep: tuple[int, ...] = ()) -> Iterator[None]:
    """Around a play: afterwards (failed or not), nothing of the tree holds a host port."""
    try:
        yield
    finally:
        stop_listeners(tree, label, say, keep)
