"""How long a sandbox server lives, and how a lost one is found.

A server started by tasks/providers/sandbox_process.py is detached (own session) and would
otherwise run until someone stops it. It stops itself when:

- its state folder or its pid file is gone (`rm -rf .kiln`, `git clean -fdx`), or the pid file
  names another process (a newer server took its place);
- no request came for `KILN_SANDBOX_IDLE_SECONDS` (default 7200: two hours).

It checks every `KILN_SANDBOX_CHECK_SECONDS` (default 30). Both are read when the server
starts. The state folder is on the server's command line (`--kiln-state DIR`), so `doit
sandbox-stop` finds the servers of this checkout whose pid file was lost by reading /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

IDLE_DEFAULT = 7200.0
CHECK_DEFAULT = 30.0
# The pid file is written once the server answers and is seeded; until then its absence is normal.
START_GRACE = 120.0
MODULE = "tasks.providers.sandbox_server"
FLAG = "--kiln-state"


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = default
    return value if value > 0 else default


def check_settings() -> None:
    """Refuse a bad value in one line before a server is started (the server itself would
    silently fall back to the default)."""
    from tasks.errors import KilnError

    for name in ("KILN_SANDBOX_IDLE_SECONDS", "KILN_SANDBOX_CHECK_SECONDS"):
        raw = os.environ.get(name, "")
        try:
            ok = not raw or float(raw) > 0
        except ValueError:
            ok = False
        if not ok:
            raise KilnError(f"variable {name}: {raw!r} is not a number of seconds above 0, e.g. {name}=3600")


class _Clock:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()


def _why_stop(state: Path, started: float, clock: _Clock, idle: float) -> str:
    """Why this server should stop now, or '' to keep running."""
    pid_file = state / "pid"
    if not state.is_dir():
        return f"its state folder {state} is gone"
    try:
        named = pid_file.read_text().strip()
    except OSError:
        named = None
    if named is None:
        if time.monotonic() - started > START_GRACE:
            return f"its pid file {pid_file} is gone"
    elif named != str(os.getpid()):
        return f"its pid file names another process ({named})"
    quiet = time.monotonic() - clock.last
    if quiet > idle:
        return f"no request for {quiet:.0f}s (KILN_SANDBOX_IDLE_SECONDS={idle:.0f})"
    return ""


def install(argv: list[str]) -> list[str]:
    """In the server: take `--kiln-state DIR` out of argv (moto does not know it), count
    requests, and start the watch. Returns the argv for moto."""
    if FLAG not in argv:
        return argv
    at = argv.index(FLAG)
    state = Path(argv[at + 1])
    rest = argv[:at] + argv[at + 2 :]
    idle = _seconds("KILN_SANDBOX_IDLE_SECONDS", IDLE_DEFAULT)
    every = _seconds("KILN_SANDBOX_CHECK_SECONDS", CHECK_DEFAULT)
    clock = _Clock()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    served = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        clock.touch()
        return served(self, environ, start_response)

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]
    started = time.monotonic()

    def watch() -> None:
        while True:
            time.sleep(every)
            why = _why_stop(state, started, clock, idle)
            if why:
                # The log may be gone with the folder: stderr goes nowhere then, harmlessly.
                with contextlib.suppress(OSError):
                    sys.stderr.write(f"kiln sandbox: stopping: {why}\n")
                    sys.stderr.flush()
                os._exit(0)

    threading.Thread(target=watch, name="kiln-sandbox-lifetime", daemon=True).start()
    return rest


def server_command(state: Path, port: int) -> list[str]:
    return [sys.executable, "-m", MODULE, "-H", "127.0.0.1", "-p", str(port), FLAG, str(state)]


def servers_of(state: Path) -> list[int]:
    """Pids of sandbox servers started for this state folder (pid file or not): matched on the
    command line kiln gave them, so another checkout's servers are never touched."""
    wanted = str(state.resolve()) if state.exists() else str(state)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args]
        if MODULE in words and FLAG in words:
            at = words.index(FLAG)
            if at + 1 < len(words) and words[at + 1] in (wanted, str(state)):
                found.append(int(entry.name))
    return sorted(found)


def is_server(pid: int) -> bool:
    """A sandbox server (of any checkout, from before or after --kiln-state was added)."""
    try:
        words = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return MODULE.encode() in words


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child, not yet reaped) is gone for every purpose here.
    with contextlib.suppress(OSError):
        if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            return


def stop_lost(state: Path, known: int | None, say: Callable[[str], None]) -> int:
    """Stop this checkout's servers that no pid file names; say one line each."""
    count = 0
    for pid in servers_of(state):
        if pid == known:
            continue
        terminate(pid)
        say(f"stopped sandbox server pid {pid} of {state} (its pid file was lost)")
        count += 1
    return count
