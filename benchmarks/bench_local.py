"""The provider=local edit loop: `doit core provider=local distro=debian-12` after a change of
core.yml, against a bare `ansible-playbook -c community.general.chroot` of the same playbook
into an identical tree (a fresh full copy of server-base's tree each round, made outside the
timing), in the same run (goal <= 1.3x); then the same through `doit watch core`, from a save
of core.yml to the end of its run (goal <= 1.3x) and to the play's first line. Also prints
kiln's own start-up before the play (goal < 0.3 s, read from the build log's `# kiln:` line)
and the disk a new layer costs.

Needs root (debootstrap, chroot, mounts). The debootstrap tree is taken from the checkout's
state folder when it is there (otherwise kiln makes it, about a minute); everything else is
made in a scratch copy of the catalog under /tmp and removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import REPO, compare, doit, env, scratch_catalog

LOCAL = ("provider=local", "distro=debian-12")
GOAL, START_GOAL = 1.3, 0.3
ROUNDS = 5


def layers(root: Path) -> Path:
    return root / ".kiln/local/layers"


def current(root: Path, role: str) -> str:
    images = json.loads(doit(root, "images", *LOCAL, "format=json").stdout)["images"]
    return next(i["image_id"] for i in images if i["role"] == role)


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def human(n: float) -> str:
    if n < 2**20:
        return f"{n / 2**10:.0f} KB"
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


def full_copy(root: Path, layer: str, dest: Path) -> None:
    """The layer's tree as one plain folder: through a read-only overlay of its stack."""
    sys.path.insert(0, str(REPO))
    from tasks.providers.layer_stack import stack

    state = root / ".kiln/local"
    parts = stack(state / "layers", state / "cache", state / "layers" / layer)
    view = dest.with_name(dest.name + ".view")
    view.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        subprocess.run(["cp", "-a", "--reflink=auto", f"{parts[0]}/.", str(dest)], check=True)
        return
    lower = ":".join(str(p) for p in parts)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lower}", str(view)], check=True)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--reflink=auto", f"{view}/.", str(dest)], check=True)
    finally:
        subprocess.run(["umount", str(view)], check=True)
        view.rmdir()


class Watch:
    """`doit watch core` on provider=local, its output read line by line with the time it came."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "doit", "watch", "core", *LOCAL],
            cwd=root,
            env=env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.perf_counter(), line))

    def wait_for(self, pattern: str, after: float) -> float:
        """When the first line matching pattern came after the given time."""
        deadline = time.perf_counter() + 600
        while time.perf_counter() < deadline and self.proc.poll() is None:
            for at, line in list(self.lines):
                if at >= after and re.search(pattern, line):
                    return at
            time.sleep(0.01)
        raise RuntimeError(f"doit watch never said {pattern!r}:\n{''.join(ln for _, ln in self.lines[-40:])}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        self.reader.join(timeout=10)


def main() -> int:
    if os.geteuid() != 0:
        print("bench_local: needs root (debootstrap, chroot, mounts)")
        return 1
    root = scratch_catalog()
    bare = root.parent / "bare"
    try:
        cache = REPO / ".kiln/local/cache"
        if (cache / "bookworm-minbase.complete").exists():
            (root / ".kiln/local").mkdir(parents=True)
            subprocess.run(["cp", "-a", "--reflink=auto", str(cache), str(root / ".kiln/local/cache")], check=True)
        started = time.perf_counter()
        doit(root, "core", *LOCAL)
        print(
            f"the chain (base-vmi, server-base, core), debootstrap tree at hand: {time.perf_counter() - started:.0f} s"
        )
        base = current(root, "server-base")
        print(f"server-base's layer: {human(du(layers(root) / base))}")
        playbook = root / "provision/ansible/core.yml"
        edits = iter(range(10_000))

        def ours() -> None:
            with playbook.open("a") as fh:
                fh.write(f"# bench edit {next(edits)}\n")
            doit(root, "core", *LOCAL)

        def fresh_tree() -> None:
            shutil.rmtree(bare, ignore_errors=True)
            full_copy(root, base, bare)
            os.sync()  # the copy's gigabyte written back now, not during the next timed round

        ansible = Path(sys.executable).parent / "ansible-playbook"
        extra = json.dumps({"ansible_python_interpreter": "/usr/bin/python3", "kiln_role": "core"})
        cmd = [str(ansible), "-i", f"{bare},", "-c", "community.general.chroot", "-e", "ansible_become=false"]
        cmd += ["-e", extra, str(playbook)]
        bare_env = {**env(), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0"}

        def baseline() -> None:
            subprocess.run(cmd, cwd=playbook.parent, env=bare_env, capture_output=True, check=True)

        ratio = compare(
            "edit loop, core.yml changed", ours, baseline, goal=GOAL, rounds=ROUNDS, before_baseline=fresh_tree
        )
        watch = Watch(root)
        try:
            watch.wait_for(r"run finished", 0.0)
            to_play: list[float] = []

            def saved() -> None:
                with playbook.open("a") as fh:
                    fh.write(f"# bench edit {next(edits)}\n")
                at = time.perf_counter()
                to_play.append(watch.wait_for(r"\] PLAY \[", at) - at)
                watch.wait_for(r"run finished", at)

            watched = compare(
                "doit watch, core.yml saved", saved, baseline, goal=GOAL, rounds=3, before_baseline=fresh_tree
            )
            print(f"doit watch: from the save to the play's first line: median {statistics.median(to_play):.2f} s")
        finally:
            watch.stop()
        logs = sorted((root / ".kiln/logs/local").rglob("core/*.log"), key=lambda p: p.stat().st_mtime)
        starts = []
        for log in logs[-ROUNDS:]:
            found = re.search(r"^# kiln: ([0-9.]+) s from this process's start to the play", log.read_text(), re.M)
            if found:
                starts.append(float(found.group(1)))
        start = statistics.median(starts) if starts else float("inf")
        verdict = "meets" if start < START_GOAL else "MISSES"
        each = ", ".join(f"{s:.2f}" for s in starts)
        print(f"kiln before the play: median {start:.3f} s ({each}) (goal < {START_GOAL} s: {verdict})")
        newest = current(root, "core")
        cost, copy = du(layers(root) / newest), du(bare)
        print(f"a new core layer costs {human(cost)} of disk (a full copy of its tree: {human(copy)})")
        return 0 if max(ratio, watched) <= GOAL and start < START_GOAL else 1
    finally:
        shutil.rmtree(bare, ignore_errors=True)
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
