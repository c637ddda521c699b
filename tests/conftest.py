"""Fixtures: a temporary copy of the example catalog (a git repository of its own), the real
doit CLI run in a subprocess there, and a look into its sandbox (moto on loopback) and databases."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CATALOG = ("dodo.py", "pyproject.toml", "packer", "provision", "distros", "customers")


def clean_env(home: Path) -> dict[str, str]:
    """No real credential and nothing beyond loopback: no metadata service, no config files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "PACKER_", "KILN_"))}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "CHECKPOINT_DISABLE": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONWARNINGS": "ignore",
            # The code under test is this checkout's, whatever the venv's editable install points at.
            "PYTHONPATH": str(REPO),
        }
    )
    return env


@dataclass
class Kiln:
    root: Path
    env: dict[str, str]

    def doit(
        self,
        *args: str,
        code: int | None = 0,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "doit", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        )
        if code is not None and proc.returncode != code:
            raise AssertionError(
                f"doit {' '.join(args)} exited {proc.returncode}, wanted {code}\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    @property
    def state(self) -> Path:
        return self.root / ".kiln"

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        con = sqlite3.connect(self.state / "results.sqlite")
        con.row_factory = sqlite3.Row
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def builds(self) -> int:
        """Packer builds started so far (every one writes a build row first)."""
        if not (self.state / "results.sqlite").exists():
            return 0
        return int(self.rows("SELECT count(*) FROM builds")[0][0])

    def current(self, role: str, region: str = "us-east-1", distro: str = "debian-12") -> str:
        rows = self.rows(
            "SELECT image_id FROM images WHERE role=? AND region=? AND distro=? AND state='available'"
            " ORDER BY created_at DESC, id DESC",
            (role, region, distro),
        )
        assert rows, f"no image for {role} in {region}"
        return str(rows[0][0])

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{(self.state / 'sandbox' / 'port').read_text().strip()}"

    def ec2(self, region: str = "us-east-1") -> Any:

        return sandbox_client("ec2", self.endpoint(), region)

    def edit(self, rel: str, append: str) -> None:
        path = self.root / rel
        path.write_text(path.read_text() + append)


def sandbox_client(service: str, endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 client for the sandbox, with the obviously fake keys moto takes."""
    import boto3

    fake = "testing"
    return boto3.client(
        service, region_name=region, endpoint_url=endpoint, aws_access_key_id=fake, aws_secret_access_key=fake
    )


def copy_catalog(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in CATALOG:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.vmi.properties"))
        else:
            shutil.copy2(src, dest / name)
    git = ["git", "-C", str(dest), "-c", "user.name=kiln-tests", "-c", "user.email=tests@kiln.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    (dest / ".gitignore").write_text("/.kiln/\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "catalog"], check=True)
    return dest


@pytest.fixture
def kiln(tmp_path: Path) -> Iterator[Kiln]:
    home = tmp_path / "home"
    home.mkdir()
    k = Kiln(copy_catalog(tmp_path / "repo"), clean_env(home))
    yield k
    k.doit("sandbox-stop", code=None, timeout=60)


def git_status(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, check=True
    ).stdout


def _tree_state(root: Path) -> dict[str, str]:
    """Every tracked file's content hash plus git's view of what is untracked: what a run might
    write into the checkout."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-s"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    out = {}
    for line in listed:
        path = line.split("\t", 1)[1]
        target = root / path
        out[path] = hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else "missing"
    out["?untracked"] = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"], capture_output=True, text=True, check=True
    ).stdout
    return out


@pytest.fixture(scope="session", autouse=True)
def tracked_tree_untouched() -> Iterator[None]:
    """No test, run or demo writes into this checkout's tracked files (nor leaves new files)."""
    before = _tree_state(REPO)
    yield
    after = _tree_state(REPO)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"the test suite changed the checkout: {changed}"


KILN_PROGRAMS = ("sshd", "ssh", "packer", "ansible-playbook", "ansible", "moto_server")


def _words(pid: str) -> list[str]:
    try:
        return [w.decode(errors="replace") for w in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if w]
    except OSError:
        return []


def kiln_processes(base: Path) -> list[tuple[int, str]]:
    """Live processes kiln starts (sandbox server, a target's sshd and its sessions, Packer,
    ansible-playbook), or anything whose root is a tree, tied to base by their working folder,
    root, command line or environment (read from /proc here, not through kiln's code)."""
    # With the separator: pytest-1 must not match another session's pytest-15.
    root = str(base.resolve()) + "/"
    mine = {os.getpid(), os.getppid()}
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                continue  # a zombie holds nothing
            cwd = os.readlink(entry / "cwd")
            top = os.readlink(entry / "root")
            env = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        words = _words(entry.name)
        if not words:
            continue
        names = {Path(w).name for w in words[:2]} | {words[0].split(":")[0]}
        is_kiln = "tasks.providers.sandbox_server" in words or bool(names & set(KILN_PROGRAMS))
        tied = root in cwd + "/" or root in " ".join(words) or root in env
        if (top + "/").startswith(root) or (is_kiln and tied):
            out.append((int(entry.name), " ".join(words)[:160]))
    return out


@pytest.fixture(scope="session", autouse=True)
def no_kiln_process_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """When the suite ends, nothing kiln started under a test's folder is still running; what
    is found is named (and then killed, so it does not pile up)."""
    base = tmp_path_factory.getbasetemp()
    yield
    left = kiln_processes(base)
    for pid, _what in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"kiln processes outlived the test suite: {left}"


@pytest.fixture(scope="session")
def rootfs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The debootstrap tree, made by kiln itself once per test session (about a minute here),
    shared by pytest-xdist's workers: the first to ask makes it under a lock, the others wait
    and take it. Each test's state folder gets a copy with `seed_rootfs`."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "rootfs" / "repo"
    with (shared / "rootfs.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "rootfs" / "complete").exists():
            shutil.rmtree(shared / "rootfs", ignore_errors=True)
            copy_catalog(root)
            home = root.parent / "home"
            home.mkdir()
            Kiln(root, clean_env(home)).doit("base-vmi", "provider=local", "distro=debian-12", timeout=900)
            (shared / "rootfs" / "complete").write_text("debootstrap tree made\n")
    return root / ".kiln" / "local" / "cache"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that build real root filesystems (debootstrap, chroot) are marked `rootfs`: the
    slow part, which `-m "not rootfs"` leaves out while CI runs everything."""
    for item in items:
        if "rootfs_cache" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.rootfs)


def seed_rootfs(kiln: Kiln, cache: Path) -> None:
    dest = kiln.state / "local"
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(cache), str(dest / "cache")], check=True)


# The source name of the test's own overlay over a layers folder (the `layer_mode` fixture):
# it is the test's, not kiln's, so `mounts_under` leaves it out.
TEST_MOUNT = "kiln-test-copies"


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path (read here, not through kiln's own code)."""
    root = str(path.resolve())
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        source = fields[fields.index("-") + 2]
        if root in fields[4] and source != TEST_MOUNT:
            out.append(fields[4])
    return out


def layer_stack(layer: Path) -> list[Path]:
    """An overlay layer's lower directories, top first, read here from its `layer.json` chain
    (not through kiln's code): its upper, its parents' uppers, then the debootstrap tree."""
    layers, cache = layer.parent, layer.parent.parent / "cache"
    out, here = [], layer
    while (here / "layer.json").is_file():
        record = json.loads((here / "layer.json").read_text())
        out.append(here / "upper")
        here = layers / record["parent"] if record["parent"] else cache / record["base"]
    return [*out, here]


@contextlib.contextmanager
def layer_view(layer: Path) -> Iterator[Path]:
    """A layer's whole tree as its image has it: a full copy is its own folder; an overlay
    layer is mounted read-only from its stack, outside the state folder, for the block."""
    if not (layer / "layer.json").is_file():
        yield layer
        return
    at = Path(tempfile.mkdtemp(prefix="kiln-layer-view-"))
    lowers = ":".join(str(p) for p in layer_stack(layer))
    subprocess.run(["mount", "-t", "overlay", "kiln-test-view", "-o", f"ro,lowerdir={lowers}", str(at)], check=True)
    try:
        yield at
    finally:
        subprocess.run(["umount", str(at)], check=True)
        at.rmdir()


@pytest.fixture(params=["overlay", "copies"])
def layer_mode(request: pytest.FixtureRequest, kiln: Kiln) -> Iterator[str]:
    """Both ways provider=local keeps layers. "copies" is the real fallback: the layers folder
    is itself an overlay mount, and the kernel refuses overlayfs as an upper directory."""
    if request.param == "overlay":
        yield "overlay"
        return
    layers = kiln.state / "local" / "layers"
    layers.mkdir(parents=True, exist_ok=True)
    below = Path(tempfile.mkdtemp(prefix="kiln-test-copies-"))
    for part in ("lower", "upper", "work"):
        (below / part).mkdir()
    opts = f"lowerdir={below / 'lower'},upperdir={below / 'upper'},workdir={below / 'work'}"
    subprocess.run(["mount", "-t", "overlay", TEST_MOUNT, "-o", opts, str(layers)], check=True)
    try:
        yield "copies"
    finally:
        subprocess.run(["umount", "-l", str(layers)], check=False)
        shutil.rmtree(below, ignore_errors=True)


def rooted_in(path: Path) -> list[str]:
    """Processes whose root directory is at or below path."""
    root = str(path.resolve())
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "root").startswith(root):
                    out.append(proc.name)
            except OSError:
                continue
    return out


# -- helpers the test modules share --------------------------------------------------------


def one_line_error(proc_stderr: str, *words: str) -> str:
    assert "Traceback" not in proc_stderr, proc_stderr
    errors = [line for line in proc_stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, proc_stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def failure_line(proc_stderr: str, *words: str) -> str:
    """An error found while running: the reporter's one `kiln: <what>: <message>` line."""
    assert "Traceback" not in proc_stderr, proc_stderr
    lines = [line for line in proc_stderr.splitlines() if all(w in line for w in words)]
    assert len(lines) == 1, proc_stderr
    assert lines[0].startswith("kiln: ")
    return lines[0]


def slow_packer(tmp_path: Path) -> dict[str, str]:
    """The real Packer, started two seconds late: both runs are surely in flight together."""
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir()
    fake.write_text('#!/bin/bash\n[ "$1" = build ] && sleep 2\nexec /usr/bin/packer "$@"\n')
    fake.chmod(0o755)
    return {"PATH": f"{fake.parent}:/usr/bin:/bin"}


def start(kiln: Kiln, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "doit", *args],
        cwd=kiln.root,
        env={**kiln.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def leftovers(kiln: Kiln) -> tuple[list[str], list[str], list[str]]:
    ec2 = kiln.ec2("eu-west-1")
    running = [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    keys = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
    groups = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    return running, keys, groups


def wrapper(tmp_path: Path, on_build: str) -> dict[str, str]:
    """A `packer` whose `build` runs `on_build` (bash) instead of / around the real one."""
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f'#!/bin/bash\nif [ "$1" = build ]; then\n{on_build}\nfi\nexec /usr/bin/packer "$@"\n')
    fake.chmod(0o755)
    return {"PATH": f"{fake.parent}:/usr/bin:/bin"}


def held_packer(tmp_path: Path, mark: Path, before: bool) -> dict[str, str]:
    """The real Packer with a pause before (or after) its build, during which the test kills
    kiln; the wrapper writes its pid to `mark` when the pause starts."""
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir(exist_ok=True)
    pause = f'[ "$1" = build ] && {{ echo $$ > {mark}; sleep 300; }}'
    body = (
        f'#!/bin/bash\n{pause}\nexec /usr/bin/packer "$@"\n'
        if before
        else f'#!/bin/bash\n/usr/bin/packer "$@"\ncode=$?\n{pause}\nexit $code\n'
    )
    fake.write_text(body)
    fake.chmod(0o755)
    return {"PATH": f"{fake.parent}:/usr/bin:/bin"}


def kill_kiln_when(kiln: Kiln, env: dict[str, str], mark: Path, *args: str) -> int:
    """Start `doit args`, SIGKILL it (no chance to clean up) once mark appears, and end the
    held Packer stand-in too (a real Packer would have finished on its own); return kiln's pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", *args],
        cwd=kiln.root,
        env={**kiln.env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (mark.exists() and mark.read_text().strip()):
        assert proc.poll() is None, "kiln ended before the kill point"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.killpg(int(mark.read_text()), signal.SIGKILL)  # the stand-in leads its own session
    return proc.pid


def untagged(ec2: Any) -> list[dict[str, Any]]:
    return [
        i
        for i in ec2.describe_images(Owners=["self"])["Images"]
        if "fingerprint" not in {t["Key"] for t in i.get("Tags", [])}
    ]


def cloud_leftovers(ec2: Any) -> dict[str, int]:
    """What a cleanup must leave at zero, counted here with boto3, not through kiln."""
    running = [
        i
        for r in ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
        )["Reservations"]
        for i in r["Instances"]
        if any(t["Key"] == "Name" and t["Value"].startswith("kiln build ") for t in i.get("Tags", []))
    ]
    keys = [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith(("packer_", "kiln-target-"))]
    groups = [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith("packer_")]
    return {"instances": len(running), "key pairs": len(keys), "groups": len(groups), "untagged": len(untagged(ec2))}
