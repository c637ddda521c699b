"""A child process in its own process group, its output kept in a log and handed line by line
to the caller, with kiln's interrupt handling: SIGINT/SIGTERM are forwarded to the group and
its cleanup awaited; a second interrupt stops waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tasks.build import interrupts
from tasks.errors import KilnError


def run_streamed(
    cmd: list[str],
    out: IO[str],
    label: str,
    log: Path,
    on_line: Callable[[str], None],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    local: bool = False,
) -> int:
    """Run cmd, writing every line to `out` and passing it to on_line; return the exit code."""
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as err:
        raise KilnError(f"{Path(cmd[0]).name}: cannot start {cmd[0]}: {err.strerror}") from None
    interrupts.register(proc.pid, label, str(log), local)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            out.write(raw)
            out.flush()
            on_line(raw)
        return proc.wait()
    except SystemExit:
        # The user interrupted twice: stop waiting, as promised (the handler named the run).
        interrupts.unregister(proc.pid)
        raise
    except BaseException:
        # Leaving for any other reason: let the child clean up before we go.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        raise
    finally:
        interrupts.unregister(proc.pid)
        if proc.stdout is not None:  # not left to the garbage collector: one descriptor per run
            proc.stdout.close()
