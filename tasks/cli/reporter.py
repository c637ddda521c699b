"""doit reporter: status lines on stderr, each failure as one line, kiln's exit codes."""

from __future__ import annotations

import sys
import time
from typing import Any

from doit.exceptions import UnmetDependency

from tasks.build import interrupts
from tasks.cli.failures import FAILURES
from tasks.errors import EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER

# The exit code when several kinds of failure happened in one run: the most telling wins.
_PRIORITY = (EXIT_INTERRUPTED, EXIT_ERROR, EXIT_USER, EXIT_FAILED)


class KilnReporter:
    desc = "kiln: status on stderr, one line per failure"

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        self.codes: list[int] = []
        self.started = time.monotonic()

    @staticmethod
    def _say(text: str) -> None:
        sys.stderr.write(f"kiln: {text}\n")
        sys.stderr.flush()

    @staticmethod
    def _label(task: Any) -> str:
        if task.name.startswith("_render:"):
            return "render " + "/".join(task.name.split(":", 1)[1].split("/")[:2])
        return str(task.title()) if ":" in task.name else str(task.name)

    def initialize(self, tasks: Any, selected_tasks: list[str] | None) -> None:
        from tasks.cli.command_line import CURRENT

        interrupts.install()
        if CURRENT:
            CURRENT[0].selected = set(selected_tasks or [])
            CURRENT[0].warm_up()

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        pass

    def add_failure(self, task: Any, fail: Any) -> None:
        if isinstance(fail, UnmetDependency):
            return  # its dependency's failure was reported already
        recorded = FAILURES.by_task.get(task.name)
        if recorded is None:
            # Not one of ours: a doit error (e.g. while saving state). Keep it to one line.
            message = " ".join(str(getattr(fail, "message", fail)).split()) or type(fail).__name__
            recorded = (EXIT_ERROR, message)
        code, message = recorded
        if interrupts.interrupted.is_set():
            code = EXIT_INTERRUPTED
        self.codes.append(code)
        self._say(f"{self._label(task)}: {message}")

    def add_success(self, task: Any) -> None:
        pass

    def skip_uptodate(self, task: Any) -> None:
        if task.name[0] != "_" and ":" in task.name:
            self._say(f"{self._label(task)}: up to date")

    def skip_ignore(self, task: Any) -> None:
        self._say(f"{self._label(task)}: ignored")

    def cleanup_error(self, exception: Any) -> None:
        self._say(f"cleanup error: {' '.join(str(exception).split())}")

    def runtime_error(self, msg: str) -> None:
        self.codes.append(EXIT_ERROR)
        self._say(f"error: {' '.join(msg.split())}")

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        from tasks.cli.command_line import CURRENT

        if CURRENT:
            CURRENT[0].settle()
            counts = CURRENT[0].counts
            if counts:
                parts = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
                calls = len(CURRENT[0].cloud_calls())
                # Each copy is a build (an instance for 10-30 minutes) that did not run.
                saved = counts.get("copied", 0)
                fill = f"; region fill saved {saved} build{'' if saved == 1 else 's'}" if saved else ""
                self._say(f"{parts} in {time.monotonic() - self.started:.1f}s ({calls} cloud calls){fill}")
            if CURRENT[0].build_ids:
                from tasks.records.costs import build_lines

                for line in build_lines(CURRENT[0].results, CURRENT[0].build_ids):
                    self._say(line)
        if interrupts.interrupted.is_set():
            self.codes.append(EXIT_INTERRUPTED)
        if self.codes:
            # doit would say 1 or 2; kiln's contract also has 3 (user error) and 130.
            raise SystemExit(next(c for c in _PRIORITY if c in self.codes))
