"""`doit watch <role>`: the real doit CLI watching a catalog copy, real Packer against the
sandbox. A save of the role's playbook rebuilds that role only; other files and editor temp
files do nothing; Ctrl-C stops cleanly (exit 130), also in the middle of a run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Kiln, failure_line, leftovers, mounts_under, one_line_error, seed_rootfs

SANDBOX = ("provider=sandbox", "region=us-east-1")


class Watching:
    """A `doit watch` process, its stdout and stderr collected line by line by two threads."""

    def __init__(self, kiln: Kiln, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "doit", "watch", *args],
            cwd=kiln.root,
            env={**kiln.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def count(self, pattern: str, where: str = "err") -> int:
        lines = list(self.err if where == "err" else self.out)
        return sum(1 for line in lines if re.search(pattern, line))

    def wait_for(self, pattern: str, n: int = 1, where: str = "err", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.count(pattern, where) < n:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"never saw {pattern!r} x{n}:\n{self.text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for t in self._readers:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    def text(self) -> str:
        return f"--- stdout\n{''.join(self.out)[-4000:]}\n--- stderr\n{''.join(self.err)[-6000:]}"


def test_a_saved_playbook_rebuilds_its_role_only_and_ctrl_c_stops(kiln: Kiln) -> None:
    w = Watching(kiln, "core", *SANDBOX)
    try:
        w.wait_for(r"^kiln: watching \d+ files of core and its ancestors \(base-vmi, server-base\); Ctrl-C to stop")
        # The first run happens at start: the chain is built so the layer is current.
        w.wait_for(r"^kiln: run finished \(exit 0\) in [\d.]+s; watching$")
        assert kiln.builds() == 3, w.text()

        # An editor's burst of writes to the playbook: one run, one build (core only).
        for i in range(3):
            kiln.edit("provision/ansible/core.yml", f"# edit {i}\n")
        w.wait_for(r"^kiln: provision/ansible/core.yml changed: running doit core provider=sandbox region=us-east-1$")
        w.wait_for(r"^kiln: run finished \(exit 0\)", n=2)
        assert kiln.builds() == 4, w.text()
        assert [r["role"] for r in kiln.rows("SELECT role FROM builds ORDER BY id")][-1] == "core"

        # Not core's inputs: a sibling's playbook in the same folder, an unrelated file, editor
        # temp files. Nothing runs (a short bounded wait: the debounce is 0.4 s).
        # An Ansible role core does not use yet is not core's input either.
        kiln.edit("provision/ansible/pipeline.yml", "# not core's\n")
        (kiln.root / "README.md").write_text("notes\n")
        for temp in (".#core.yml", "core.yml~", ".core.yml.swp", "4913"):
            (kiln.root / "provision" / "ansible" / temp).write_text("x\n")
        extra = kiln.root / "provision" / "ansible" / "roles" / "extra" / "tasks" / "main.yml"
        extra.parent.mkdir(parents=True)
        extra.write_text("- name: extra\n  ansible.builtin.debug:\n    msg: extra\n")
        time.sleep(2)
        assert w.count("changed: running") == 1, w.text()
        assert kiln.builds() == 4

        # The file set is recomputed after each run: once core.yml uses the role, its files count.
        kiln.edit("provision/ansible/core.yml", "    - extra\n")
        w.wait_for(r"^kiln: run finished \(exit 0\) in [\d.]+s; watching \d+ files$")
        assert kiln.builds() == 5, w.text()
        extra.write_text(extra.read_text() + "# changed\n")
        w.wait_for(r"^kiln: provision/ansible/roles/extra/tasks/main.yml changed: running doit core")
        w.wait_for(r"^kiln: run finished \(exit 0\)", n=4)
        assert kiln.builds() == 6, w.text()
    finally:
        code = w.stop()
    assert code == 130, w.text()
    assert "Traceback" not in "".join(w.err), w.text()
    assert w.err[-1] == "kiln: watch: stopped watching core\n", w.text()


@pytest.mark.skipif(os.geteuid() != 0, reason="provider=local needs root")
def test_a_save_on_provider_local_shows_the_play_and_builds_one_layer(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    w = Watching(kiln, "core", "provider=local", "distro=debian-12")
    try:
        w.wait_for(r"^kiln: run finished \(exit 0\)", timeout=900)
        assert kiln.builds() == 3, w.text()
        kiln.edit("provision/ansible/core.yml", "# a save\n")
        w.wait_for(r"^kiln: provision/ansible/core.yml changed: running doit core provider=local distro=debian-12$")
        # The play's own output streams to the terminal as it runs, labelled with the image.
        w.wait_for(r"^\[core/debian-12/local\] PLAY \[Core services image\]", n=2, where="out")
        w.wait_for(r"^kiln: run finished \(exit 0\)", n=2)
        assert kiln.builds() == 4, w.text()
        assert [r["role"] for r in kiln.rows("SELECT role FROM builds ORDER BY id")][-1] == "core"
        assert not mounts_under(kiln.state), "a mount was left between runs"
    finally:
        code = w.stop()
    assert code == 130, w.text()
    assert not mounts_under(kiln.state)


def test_ctrl_c_during_a_run_stops_the_build_first(kiln: Kiln) -> None:
    # provider=aws through an endpoint override to the sandbox: its instances have no machine
    # behind them, so the build waits for SSH until interrupted (no race on timing).
    endpoint = kiln.doit("sandbox").stdout.strip()
    fake = "testing"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": fake, "AWS_SECRET_ACCESS_KEY": fake}
    w = Watching(kiln, "server-base", "region=eu-west-1", env=env)
    try:
        w.wait_for("Waiting for SSH", where="out")
    finally:
        code = w.stop()
    assert code == 130, w.text()
    err = "".join(w.err)
    assert "Traceback" not in err, w.text()
    assert "interrupted: waiting for Packer to clean up the run of server-base" in err
    assert "run finished" not in err
    assert leftovers(kiln) == ([], [], [])
    rows = kiln.rows("SELECT role, status FROM builds ORDER BY id")
    assert [(r["role"], r["status"]) for r in rows] == [("base-vmi", "ok"), ("server-base", "interrupted")]


def test_watch_refuses_unknown_or_missing_roles(kiln: Kiln) -> None:
    proc = kiln.doit("watch", "nosuchrole", *SANDBOX, code=3)
    assert "unknown role 'nosuchrole'" in failure_line(proc.stderr, "unknown role")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = kiln.doit("watch", *SANDBOX, code=3)
    assert "name a role" in failure_line(proc.stderr, "name a role")
    proc = kiln.doit("watch", "core", "role=pipeline", *SANDBOX, code=3)
    assert "one role at a time" in failure_line(proc.stderr, "one role")
    proc = kiln.doit("watch", "core", "debug=1", *SANDBOX, code=3)
    # Without a terminal, debug=1 is refused before any task runs; with one, by watch itself.
    assert "variable debug" in one_line_error(proc.stderr, "debug")
    assert not (kiln.state / "sandbox" / "pid").exists(), "a refused watch starts nothing"


def test_doit_list_does_not_import_watchdog(kiln: Kiln) -> None:
    proc = kiln.doit("list", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert "watch " in proc.stdout
    assert "tasks.cli.watch" in proc.stderr and "watchdog" not in proc.stderr


def test_the_watched_files_are_the_fingerprinted_ones(kiln: Kiln) -> None:
    from tasks.catalog.load import load_catalog
    from tasks.cli.options import Options
    from tasks.cli.watch import is_editor_temp, watched_files

    catalog = load_catalog(kiln.root)
    options = Options(provider="sandbox", customer="paxata", distros=("debian-12",), regions=("us-east-1",))
    files = {p.relative_to(kiln.root).as_posix() for p in watched_files(catalog, "core", options)}
    for f in (
        "provision/ansible/core.yml",
        "provision/ansible/server-base.yml",
        "packer/core/role.toml",
        "packer/server-base/role.toml",
        "packer/base-vmi/role.toml",
        "distros/debian-12/distro.toml",
        "customers/paxata/customer.toml",
    ):
        assert f in files, sorted(files)
    assert any(f.startswith("packer/_templates/") for f in files)
    assert "provision/ansible/pipeline.yml" not in files
    assert not any(f.startswith("packer/pipeline/") for f in files)
    assert all(Path(kiln.root, f).is_file() for f in files)
    assert all(is_editor_temp(n) for n in (".#core.yml", "core.yml~", ".core.yml.swp", "4913", "#core.yml#"))
    assert not any(is_editor_temp(n) for n in ("core.yml", "main.yml", "role.toml"))
