"""`doit watch <role> [name=value ...]`: run `doit <role> <same variables>` once at start, then
again whenever one of its inputs is saved, until Ctrl-C.

The inputs are the files kiln fingerprints for the role and its ancestors (playbooks with their
Ansible roles, role.inputs globs) plus role.toml, the shared templates, distro.toml and
customer.toml. Their directories are watched (not recursively) with watchdog, events are
filtered by that set, bursts of editor writes are coalesced, and the set is recomputed after
each run (a playbook may gain a role). Each run is a child process (doit's own CLI, this Python,
the catalog's folder) in its own process group, with the watcher's terminal output; Ctrl-C is
forwarded to it through tasks/build/interrupts.py, which waits for Packer's cleanup, and then watching
stops with exit 130. Provider-agnostic: the provider is just one of the variables passed on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.build import interrupts
from tasks.catalog.load import Catalog
from tasks.cli import failures
from tasks.cli.options import Options, cmdline_vars
from tasks.errors import Interrupted, KilnError

# Quiet time after the last save before a run starts; an editor's burst of writes (temp file,
# rename, chmod, backup) lands well inside it. A stream of saves never delays a run beyond MAX.
DEBOUNCE = 0.4
DEBOUNCE_MAX = 2.0
# Event kinds that mean content changed; watchdog also reports opens and reads (kiln's own runs
# read every input), which must not trigger anything.
CHANGES = frozenset({"created", "modified", "moved", "deleted"})

# doit's CLI entry point (what `python -m doit` runs), with one difference: a Ctrl-C forwarded
# before kiln's handler is installed (the first fraction of a second, nothing started yet)
# ends the child with one line instead of a KeyboardInterrupt traceback.
_CHILD = (
    "import sys\n"
    "try:\n"
    "    from doit.doit_cmd import DoitMain\n"
    "    code = DoitMain().run(sys.argv[1:])\n"
    "except KeyboardInterrupt:\n"
    "    sys.stderr.write('kiln: interrupted\\n')\n"
    "    code = 130\n"
    "sys.exit(code)\n"
)


def is_editor_temp(name: str) -> bool:
    """Emacs lock and autosave files, backups, vim swap files and vim's write probe."""
    return name.startswith((".#", "#")) or name.endswith(("~", ".swp", ".swx", ".swo", ".tmp")) or name == "4913"


def watched_files(catalog: Catalog, role: str, options: Options) -> set[Path]:
    """Every file whose change can change the role's image or an ancestor's."""
    from tasks.inputs.ansible_run import AnsibleContent
    from tasks.inputs.fingerprints import input_files
    from tasks.inputs.render import template_inputs

    ansible = AnsibleContent(catalog.root, catalog.state)
    files: set[Path] = set()
    for r in catalog.chain(role):
        playbook = r.playbook
        if r.name == role and options.playbook and playbook is not None:
            playbook = options.playbook  # playbook= applies to the named role only
        files.update(path for path, _ in input_files(catalog, r, playbook, ansible).values())
        files.update(template_inputs(catalog, r, options.provider))
        files.add(catalog.root / "packer" / r.name / "role.toml")
    files.update(catalog.root / "distros" / d / "distro.toml" for d in options.distros)
    files.add(catalog.root / "customers" / options.customer / "customer.toml")
    return {Path(os.path.abspath(f)) for f in files}


def child_args(role: str, variables: dict[str, str]) -> list[str]:
    return [role, *(f"{k}={v}" for k, v in variables.items() if k != "role")]


class Watcher:
    def __init__(self, root: Path, state: Path, role: str, options: Options, variables: dict[str, str]) -> None:
        self.root = root
        self.role = role
        self.options = options
        self.args = child_args(role, variables)
        self.logs = str(state / "logs")
        self.events: queue.Queue[str] = queue.Queue()
        self.files: set[Path] = set()
        self._watches: dict[Path, Any] = {}
        self._observer: Any = None

    # -- the file set and the directories watched ------------------------------------------

    def refresh(self, catalog: Catalog | None = None) -> None:
        """Recompute the file set (from a fresh catalog) and watch the directories it needs.
        A catalog mistake made while editing is said (after each run); the previous set stays watched."""
        from tasks.catalog.load import load_catalog

        try:
            cat = catalog or load_catalog(self.root)
            if self.role not in cat.roles:
                raise KilnError(f"packer/{self.role}: role {self.role} no longer exists")
            files = watched_files(cat, self.role, self.options)
        except KilnError as err:
            if not self.files:
                raise
            _say(f"{err}; still watching the previous {len(self.files)} files")
            return
        self.files = files
        dirs = {f.parent for f in files}
        for d in sorted(set(self._watches) - dirs):
            self._observer.unschedule(self._watches.pop(d))
        for d in sorted(dirs - set(self._watches)):
            self._watches[d] = self._observer.schedule(self._handler, str(d), recursive=False)

    def start(self, catalog: Catalog) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            raise KilnError("doit watch needs watchdog: pip install watchdog") from None

        events = self.events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory or event.event_type not in CHANGES:
                    return
                events.put(os.fsdecode(event.src_path))
                if event.event_type == "moved":  # an editor's atomic save: temp file renamed
                    events.put(os.fsdecode(event.dest_path))

        self._handler = Handler()
        self._observer = Observer()
        self._observer.daemon = True
        self.refresh(catalog)
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None and self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=5)

    # -- waiting and running -----------------------------------------------------------------

    def relevant(self, path: str) -> bool:
        p = Path(os.path.abspath(path))
        return not is_editor_temp(p.name) and p in self.files

    def wait_for_change(self) -> list[Path]:
        """Block until an input changed, then until DEBOUNCE seconds pass without another."""
        changed: list[Path] = []
        first = deadline = 0.0
        while True:
            timeout = 1.0 if not changed else max(0.0, min(deadline, first + DEBOUNCE_MAX) - time.monotonic())
            try:
                path = self.events.get(timeout=timeout)
            except queue.Empty:
                if changed and time.monotonic() >= min(deadline, first + DEBOUNCE_MAX):
                    return changed
                continue
            if not self.relevant(path):
                continue
            p = Path(os.path.abspath(path))
            if not changed:
                first = time.monotonic()
            if p not in changed:
                changed.append(p)
            deadline = time.monotonic() + DEBOUNCE

    def run(self) -> int:
        """One `doit <role> <variables>` in its own process group, its output on ours."""
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *self.args],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            process_group=0,  # Ctrl-C reaches the watcher only; it forwards it
        )
        try:
            interrupts.register(proc.pid, f"the run of {self.role}", self.logs)
            code = proc.wait()
        finally:
            interrupts.unregister(proc.pid)
            if proc.poll() is None:
                # Interrupted before the child was registered, or a second Ctrl-C: the child
                # gets its signal (its own handler waits for Packer, or stops waiting).
                _signal(proc.pid)
                proc.wait()
        if interrupts.interrupted.is_set():
            raise Interrupted(f"stopped watching {self.role}")
        elapsed = time.monotonic() - started
        before = len(self.files)
        self.refresh()  # before saying "watching": a save right after that line is seen
        now = f" {len(self.files)} files" if len(self.files) != before else ""
        _say(f"run finished (exit {code}) in {elapsed:.1f}s; watching{now}")
        return code

    def describe(self) -> str:
        return shlex.join(["doit", *self.args])


def _signal(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGINT)


def _say(text: str) -> None:
    sys.stderr.write(f"kiln: {text}\n")
    sys.stderr.flush()


def watch_command(root: Path, pos: list[str]) -> None:
    from tasks.cli.command_line import current_run

    variables = cmdline_vars()
    named = [r.strip() for r in variables.get("role", "").split(",") if r.strip()]
    roles = [*pos, *named]
    run = current_run(root)
    catalog = run.catalog
    if not roles:
        raise KilnError("doit watch: name a role, e.g. `doit watch core provider=local`")
    if len(set(roles)) > 1:
        raise KilnError(f"doit watch: one role at a time; got {', '.join(roles)}")
    role = roles[0]
    if role not in catalog.roles:
        raise KilnError(f"doit watch: unknown role '{role}'; roles: {', '.join(sorted(catalog.roles))}")
    if run.options.debug:
        raise KilnError(f"variable debug: watch keeps the terminal; run `doit {role} debug=1` on its own")
    failures.FAILURES.state = catalog.state
    watcher = Watcher(root, catalog.state, role, run.options, variables)
    try:
        watcher.start(catalog)
        ancestors = [r.name for r in catalog.chain(role)[:-1]]
        of = f"{role} and its ancestors ({', '.join(ancestors)})" if ancestors else role
        _say(f"watching {len(watcher.files)} files of {of}; Ctrl-C to stop")
        # Once at start, so the layer is current before the first edit.
        _say(f"running {watcher.describe()}")
        watcher.run()
        while True:
            changed = watcher.wait_for_change()
            what = changed[0].relative_to(root).as_posix() + (
                f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            )
            _say(f"{what} changed: running {watcher.describe()}")
            watcher.run()
    except SystemExit:
        # tasks/build/interrupts.py ends an idle watcher by SystemExit(130): say it as kiln's one line.
        if interrupts.interrupted.is_set():
            raise Interrupted(f"stopped watching {role}") from None
        raise
    finally:
        watcher.stop()


def watch_tasks(root: Path) -> Iterator[dict[str, Any]]:
    def action(pos: list[str]) -> object:
        return failures.action(failures.FAILURES, "watch", lambda: watch_command(root, pos))

    yield {
        "basename": "watch",
        "doc": "watch <role>: rebuild it (and what it needs) whenever one of its inputs is saved; Ctrl-C stops",
        "actions": [action],
        "pos_arg": "pos",
        "uptodate": [False],
        "verbosity": 2,
    }
