"""Every task body runs under a guard: a known error becomes one recorded line with its exit
code; anything else is a bug of ours, logged with its traceback, and still one line on screen."""

from __future__ import annotations

import errno
import sqlite3
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from doit.exceptions import TaskFailed

from tasks.errors import EXIT_ERROR, EXIT_USER, BuildFailed, Interrupted, KilnError

T = TypeVar("T")


class Failures:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.by_task: dict[str, tuple[int, str]] = {}

    def record(self, task: str, code: int, message: str) -> None:
        self.by_task.setdefault(task, (code, message))

    def unexpected(self, task: str, err: BaseException) -> str:
        """A full disk is the machine's state, not kiln's bug: one line, exit 3. Anything else
        is a bug of ours."""
        full = (isinstance(err, OSError) and err.errno == errno.ENOSPC) or (
            isinstance(err, sqlite3.OperationalError) and "full" in str(err)
        )
        if full:
            where = getattr(err, "filename", None) or self.state
            message = f"{where}: no space left on the device; free some, or set [tool.kiln] state to a roomier folder"
            self.record(task, EXIT_USER, message)
            return message
        return self.internal(task, err)

    def internal(self, task: str, err: BaseException) -> str:
        log = self.state / "logs" / "kiln-errors.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as fh:
                fh.write(f"--- {datetime.now(UTC).isoformat()} {task}\n")
                fh.write("".join(traceback.format_exception(err)))
            where = f"; see {log}"
        except OSError:
            where = ""
        message = f"internal error: {type(err).__name__}: {' '.join(str(err).split())}{where}"
        self.record(task, EXIT_ERROR, message)
        return message


def uptodate(failures: Failures, task: str, fn: Callable[[], bool]) -> bool:
    """Run an up-to-date check. doit lets an exception here escape as a traceback, so a failure
    is recorded and reported as 'not up to date'; the task's action then fails with it."""
    try:
        return fn()
    except (KilnError, BuildFailed, Interrupted) as err:
        failures.record(task, err.exit_code, str(err))
    except Exception as err:
        failures.unexpected(task, err)
    return False


def action(failures: Failures, task: str, fn: Callable[[], object]) -> TaskFailed | None:
    """Run fn as a doit action: a failure is a TaskFailed with one line, never a traceback."""
    if task in failures.by_task:  # its up-to-date check failed already
        return TaskFailed(failures.by_task[task][1])
    try:
        fn()
    except (KilnError, BuildFailed, Interrupted) as err:
        failures.record(task, err.exit_code, str(err))
        return TaskFailed(str(err))
    except Exception as err:
        return TaskFailed(failures.unexpected(task, err))
    return None


# One registry per doit process: the reporter reads it to print each failure as one line.
FAILURES = Failures(Path(".kiln"))
