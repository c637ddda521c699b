"""The error kinds kiln reports, each as one line, and the exit code each maps to (doit's)."""

from __future__ import annotations

# doit's exit-code contract, kept by kiln: 0 ok, 1 a task failed, 2 an error while running
# (a bug of ours), 3 a user error before running; 130 interrupted.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_USER = 3
EXIT_INTERRUPTED = 130


class KilnError(Exception):
    """A mistake the user can fix: the message is one line naming the file or variable."""

    exit_code = EXIT_USER

    def __init__(self, message: str) -> None:
        # Keep the contract: one line, whatever the cause's text held.
        super().__init__(" ".join(message.split()))


class BuildFailed(Exception):
    """A build ran and failed (Packer, Ansible, the cloud): exit 1, with the log to read."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, log: str | None = None) -> None:
        line = " ".join(message.split())
        super().__init__(f"{line}; see {log}" if log else line)
        self.log = log


class Interrupted(Exception):
    """The run was interrupted by SIGINT/SIGTERM."""

    exit_code = EXIT_INTERRUPTED


def valid_list(values: object) -> str:
    items = sorted(str(v) for v in values)  # type: ignore[attr-defined]
    return ", ".join(items) if items else "(none)"
