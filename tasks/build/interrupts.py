"""SIGINT/SIGTERM while Packer runs: forward the signal to every Packer process group, wait for
Packer's own cleanup, exit 130. A second signal stops waiting and says what may be left."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType

from tasks.errors import EXIT_INTERRUPTED


@dataclass
class _Running:
    image: str
    log: str
    local: bool = False  # a root filesystem step (debootstrap, a chroot play), not Packer


_lock = threading.Lock()
_running: dict[int, _Running] = {}
_signals = 0
interrupted = threading.Event()


def _say(text: str) -> None:
    sys.stderr.write(f"kiln: {text}\n")
    sys.stderr.flush()


def _handler(signum: int, frame: FrameType | None) -> None:
    global _signals
    with _lock:
        _signals += 1
        running = dict(_running)
        first = _signals == 1
    interrupted.set()
    if not running:
        _say("interrupted")
        raise SystemExit(EXIT_INTERRUPTED)
    if first:
        for pgid in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        names = ", ".join(sorted(r.image for r in running.values()))
        if all(r.local for r in running.values()):
            waiting = f"waiting for {names} to stop (the unfinished layer is then unmounted and removed)"
        else:
            waiting = f"waiting for Packer to clean up {names} (instance, key pair, security group)"
        _say(f"interrupted: {waiting}; interrupt again to stop waiting")
        return
    left = "; ".join(f"{r.image} (see {r.log})" for r in running.values())
    if all(r.local for r in running.values()):
        _say(f"stopped waiting: an unfinished layer may be left (doit prune provider=local removes it): {left}")
    else:
        _say(f"stopped waiting: these builds may have left an instance, key pair or security group behind: {left}")
    raise SystemExit(EXIT_INTERRUPTED)


def install() -> None:
    """Called from the main thread (the reporter's initialize) before any build starts."""
    global _signals
    with _lock:
        _signals = 0
    interrupted.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


def register(pgid: int, image: str, log: str, local: bool = False) -> None:
    with _lock:
        _running[pgid] = _Running(image, log, local)


def unregister(pgid: int) -> None:
    with _lock:
        _running.pop(pgid, None)
