"""Root filesystem trees for provider=local: a root from debootstrap, each child a copy of its
parent's tree, provisioned by ansible-playbook through the chroot connection.

The mounts a package manager needs (/proc, /dev) exist only while a play runs; afterwards every
process rooted in the tree is stopped and every mount under it released.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tasks.build import inert_daemons, interrupts
from tasks.build.child_process import run_streamed
from tasks.errors import BuildFailed, Interrupted, KilnError
from tasks.providers.mount_calls import MS_BIND, MS_REC, MS_SLAVE
from tasks.providers.mount_calls import mount as mount_call
from tasks.providers.tree_release import mounts_under, processes_in, release

__all__ = ["mounts_under", "processes_in", "release"]

VARIANT = "minbase"
INCLUDE = ("python3",)
# debootstrap makes Debian-family trees only; the others say what they would need.
NEEDS = {
    "rhel": "an RPM tree builder (dnf --installroot with the distro's repositories), which kiln does not drive yet",
    "amazon": "Amazon Linux's own repositories and dnf --installroot, which kiln does not drive yet",
}


def need_root() -> None:
    if os.geteuid() != 0:
        raise KilnError(
            "provider local: building root filesystems needs root (debootstrap, chroot, mounts); "
            "run as root, or use provider=sandbox"
        )


def local_suite(name: str, family: str, local: dict[str, str] | None) -> str:
    """The debootstrap suite of a distro, or a one-line reason provider=local cannot make it."""
    shown = f"distros/{name}/distro.toml"
    if family != "debian":
        need = NEEDS.get(family, "a tree builder for that family")
        raise KilnError(f"{shown}: provider local cannot make {name} ({family} family): it needs {need}")
    if not local or not local.get("suite"):
        raise KilnError(
            f'{shown}: provider local needs a [local] table with the debootstrap suite, e.g. suite = "bookworm"'
        )
    return str(local["suite"])


def check_tools(name: str, suite: str) -> None:
    """What making a tree needs on this machine, said before anything is written."""
    if shutil.which("debootstrap") is None:
        raise KilnError("provider local: debootstrap not found on PATH; install it (apt-get install debootstrap)")
    script = Path("/usr/share/debootstrap/scripts") / suite
    if not script.exists():
        raise KilnError(
            f"distros/{name}/distro.toml: debootstrap does not know suite '{suite}' (no {script}); upgrade debootstrap"
        )
    if suite in ("jammy", "noble", "focal") and not Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg").exists():
        raise KilnError(
            f"distros/{name}/distro.toml: provider local needs Ubuntu's archive key to make {name}; install ubuntu-keyring"
        )


def _run_logged(cmd: list[str], log: Path, label: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run with its lines streamed under the label and kept in the log (and returned)."""
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line.rstrip("\n"))
        if line.strip():
            sys.stdout.write(f"[{label}] {line}")
            sys.stdout.flush()

    with log.open("a") as out:
        out.write(f"# {' '.join(cmd)}\n")
        code = run_streamed(cmd, out, label, log, on_line, env=env, local=True)
    if interrupts.interrupted.is_set():
        raise Interrupted(f"interrupted; see {log}")
    return code, lines


def debootstrap(suite: str, cache: Path, log: Path, label: str) -> Path:
    """The pristine tree for a suite, made once and kept in the cache (about a minute)."""
    tree = cache / f"{suite}-{VARIANT}"
    if (cache / f"{tree.name}.complete").exists() and tree.is_dir():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{tree.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    # No mirror named: debootstrap's default for the suite, as apt would use.
    cmd = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", suite, str(tmp)]
    try:
        code, lines = _run_logged(cmd, log, label)
    except BaseException:
        release(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if code != 0:
        release(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        telling = next((ln for ln in reversed(lines) if ln.startswith("E:")), f"exit code {code}")
        raise BuildFailed(f"debootstrap {suite} failed: {telling}", str(log))
    shutil.rmtree(tree, ignore_errors=True)
    tmp.rename(tree)
    (cache / f"{tree.name}.complete").write_text(f"debootstrap --variant={VARIANT} {suite}\n")
    return tree


def copy_tree(src: Path, dest: Path) -> None:
    """A full, independent copy (reflinks where the filesystem has them): the source is never
    touched again, so a cached parent layer stays exactly as it was."""
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", str(src), str(dest)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        detail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        if "No space left" in detail:
            raise KilnError(
                f"{dest.parent}: no space left on the device for a new layer; run doit prune provider=local"
            )
        raise KilnError(f"{dest}: cannot copy the parent layer: {detail}")


@contextlib.contextmanager
def mounted(tree: Path) -> Iterator[None]:
    """/proc and /dev for dpkg, the host's resolver for apt, and a policy-rc.d so packages do
    not start services inside the tree."""
    policy = tree / "usr/sbin/policy-rc.d"
    resolv = tree / "etc/resolv.conf"
    saved = tree / "etc/.resolv.conf.kiln"
    try:
        for what, source, fstype, flags in (
            ("mount -t proc", "proc", "proc", 0),
            ("mount --rbind /dev", "/dev", None, MS_BIND | MS_REC),
            ("mount --make-rslave", None, None, MS_SLAVE | MS_REC),  # the host's /dev never sees ours
        ):
            at = tree / ("proc" if fstype == "proc" else "dev")
            try:
                mount_call(source, at, fstype, flags)
            except OSError as err:
                raise KilnError(f"provider local: {what} {at} failed: {err.strerror}") from None
        if resolv.exists() or resolv.is_symlink():
            resolv.rename(saved)
        shutil.copy("/etc/resolv.conf", resolv)
        policy.write_text("#!/bin/sh\n# kiln: no services start while a layer is built\nexit 101\n")
        policy.chmod(0o755)
        inert_daemons.install(tree)  # service/systemctl/start-stop-daemon stand-ins (inert_daemons.py)
        yield
    finally:
        release(tree, keep_root=True)
        inert_daemons.restore(tree)
        policy.unlink(missing_ok=True)
        if saved.exists() or saved.is_symlink():
            resolv.unlink(missing_ok=True)
            saved.rename(resolv)


_TASK = re.compile(r"^TASK \[(.*)\]")
_PLAY = re.compile(r"^PLAY \[(.*)\]")


def failed_task(lines: list[str]) -> str:
    """The name of the task Ansible printed last before its first failure."""
    task = ""
    for line in lines:
        if m := _TASK.match(line):
            task = m.group(1).split(" : ", 1)[-1]
        elif line.startswith(("fatal:", "failed:")):
            break
    return task


def failed_step(lines: list[str]) -> str:
    """'play P, task T: message' for the first failure Ansible printed."""
    play = task = ""
    for n, line in enumerate(lines):
        if m := _PLAY.match(line):
            play = m.group(1)
        elif m := _TASK.match(line):
            task = m.group(1)
        elif line.startswith(("fatal:", "failed:")) or "ERROR!" in line or line.startswith("[ERROR]"):
            detail = line.split("=>", 1)[-1].strip() if "=>" in line else line
            msg = re.search(r'"msg": "((?:[^"\\]|\\.)*)"', " ".join(lines[n : n + 30]))
            text = msg.group(1) if msg else detail
            where = f"play '{play}', task '{task}'" if task else "before any task"
            return f"{where}: {text[:300]}"
    return "see the log"


def _say(text: str) -> None:
    sys.stderr.write(f"kiln: {text}\n")
    sys.stderr.flush()


def ansible_command(
    tree: Path, playbook: Path, extra: dict[str, str], verbose: bool = False, start_at: str = ""
) -> list[str]:
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        f"{tree},",
        "-c",
        "community.general.chroot",
        # The play asks for become; in a chroot kiln already is root, and minbase has no sudo.
        "-e",
        "ansible_become=false",
    ]
    if extra:  # as JSON: a value with spaces or '=' stays one value
        cmd += ["-e", json.dumps(extra, sort_keys=True)]
    if verbose:
        cmd.append("-vvv")
    if start_at:
        cmd += ["--start-at-task", start_at]
    cmd.append(str(playbook))
    return cmd


def run_play(
    tree: Path, playbook: Path, extra: dict[str, str], play_env: dict[str, str], log: Path, label: str
) -> None:
    """play_env: where Ansible looks (roles, collections, ansible.cfg) and the read audit."""
    env = {
        **os.environ,
        **play_env,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(log.parent / ".ansible-tmp"),
    }
    cmd = ansible_command(tree, playbook, extra)
    cmd[-1:-1] = ["-e", f"ansible_chroot_exe={inert_daemons.chroot_exe(log.parent)}"]  # without CAP_SYS_TIME
    with mounted(tree), inert_daemons.checked(tree, label, _say):
        with log.open("a") as out:  # kiln's own start-up, for benchmarks/bench_local.py and the curious
            out.write(f"# kiln: {since_start():.3f} s from this process's start to the play\n")
        code, lines = _run_logged(cmd, log, label, env)
    if code != 0:
        raise PlayFailed(f"playbook {playbook.name} failed in {failed_step(lines)}", str(log), failed_task(lines))


def since_start() -> float:
    """Seconds since this process started (the kernel's clock, so the interpreter's own start
    and every import count)."""
    try:
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class PlayFailed(BuildFailed):
    def __init__(self, message: str, log: str, task: str) -> None:
        super().__init__(message, log)
        self.plain = message
        self.task = task


def tree_size(path: Path) -> int:
    proc = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    try:
        return int(proc.stdout.split()[0])
    except (ValueError, IndexError):
        return 0


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
