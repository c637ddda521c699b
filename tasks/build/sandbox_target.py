"""The machine behind a sandbox build with provision=1: a root filesystem from the local provider
running sshd on a loopback port, so Packer's real Ansible provisioner, rendered exactly as for
AWS, has something to provision.

Each role's target starts from its parent's target (the base: the debootstrap tree with sshd,
sudo and the distro's ssh user), and is kept under the sandbox folder to be looked into. After
the build its sshd and every process rooted in it are stopped, its mounts released, and the key
pair removed from the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.build.inert_daemons import checked, no_clock
from tasks.build.rootfs import (
    _run_logged,
    check_tools,
    copy_tree,
    debootstrap,
    local_suite,
    mounted,
    need_root,
    release,
)
from tasks.catalog.load import Catalog
from tasks.errors import BuildFailed, KilnError
from tasks.models import ImageKey

PACKAGES = ("openssh-server", "sudo")


def _chroot(tree: Path, script: str, log: Path, label: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    code, lines = _run_logged(no_clock(["chroot", str(tree), "/bin/sh", "-ec", script]), log, label, env)
    if code != 0:
        raise BuildFailed(f"preparing the sandbox target failed: {(lines or ['?'])[-1]}", str(log))


def base_target(state: Path, suite: str, user: str, log: Path, label: str) -> Path:
    """The debootstrap tree with sshd, sudo and the ssh user: made once, kept in the cache."""
    cache = state / "local" / "cache"
    tree = cache / f"target-{suite}-{user}"
    done = cache / f"{tree.name}.complete"
    if done.exists() and tree.is_dir():
        return tree
    tmp = cache / f".{tree.name}.{os.getpid()}"
    release(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    copy_tree(debootstrap(suite, cache, log, label), tmp)
    try:
        with mounted(tmp):
            _chroot(
                tmp,
                f"apt-get update -q && apt-get install -y -q --no-install-recommends {' '.join(PACKAGES)}"
                f" && (id {user} || useradd -m -s /bin/bash {user})"
                f" && echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/kiln && chmod 0440 /etc/sudoers.d/kiln"
                " && mkdir -p /run/sshd",
                log,
                label,
            )
    except BaseException:
        release(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tree, ignore_errors=True)
    tmp.rename(tree)
    done.write_text(f"{' '.join(PACKAGES)} and user {user}\n")
    return tree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BuildFailed(f"the sandbox target's sshd exited with code {proc.returncode}", str(log))
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(0.5)
            s.connect(("127.0.0.1", port))
            return
        time.sleep(0.1)
    raise BuildFailed(f"the sandbox target's sshd did not listen on 127.0.0.1:{port}", str(log))


@contextlib.contextmanager
def sandbox_target(
    catalog: Catalog, state: Path, provider: Any, key: ImageKey, workdir: Path, log: Path, say: Callable[[str], None]
) -> Iterator[dict[str, str]]:
    """Packer variables that point its SSH communicator at the target, for one build."""
    need_root()
    distro = catalog.distros[key.distro]
    suite = local_suite(key.distro, str(distro.conf["family"]), distro.conf.get("local"))
    check_tools(key.distro, suite)
    user = str(distro.conf["ssh_user"])
    base = base_target(state, suite, user, log, key.label)
    targets = state / "sandbox" / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    role = catalog.roles[key.role]
    parent = targets / f"{role.parent}-{key.distro}" if role.parent else None
    tree = targets / f"{key.role}-{key.distro}"
    release(tree)
    shutil.rmtree(tree, ignore_errors=True)
    copy_tree(parent if parent is not None and parent.is_dir() else base, tree)
    private = workdir / "target_key"
    private.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kiln sandbox target", "-f", str(private)], check=True
    )
    ssh_dir = tree / "home" / user / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(private.with_suffix(".pub").read_text())
    _chown_home(tree, user)
    ec2 = provider.client("ec2", key.region)
    key_name = f"kiln-target-{key.role}-{os.getpid()}-{int(time.time() * 1000)}"
    public = private.with_suffix(".pub").read_bytes()
    provider.call(
        f"ec2 ImportKeyPair {key_name} in {key.region}",
        lambda: ec2.import_key_pair(KeyName=key_name, PublicKeyMaterial=public),
    )
    port = _free_port()
    try:
        with mounted(tree):
            with log.open("a") as out:
                sshd = subprocess.Popen(
                    [
                        *no_clock(["chroot"]),  # sshd and its sessions (the play) cannot set the host's clock
                        str(tree),
                        "/usr/sbin/sshd",
                        "-D",
                        "-e",
                        "-p",
                        str(port),
                        "-o",
                        "ListenAddress=127.0.0.1",
                        "-o",
                        "PasswordAuthentication=no",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            _wait_for_port(port, sshd, log)
            say(f"{key.label}: sandbox target {tree} answers SSH on 127.0.0.1:{port}")
            with checked(tree, key.label, say, keep=(sshd.pid,)):  # no listener but kiln's sshd
                yield {
                    "ssh_host": "127.0.0.1",
                    "ssh_port": str(port),
                    "ssh_keypair_name": key_name,
                    "ssh_private_key_file": str(private),
                }
        # mounted() stopped sshd and everything else rooted in the tree, and unmounted it.
    finally:
        for path in (private, private.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        with contextlib.suppress(KilnError):
            provider.call(
                f"ec2 DeleteKeyPair {key_name} in {key.region}", lambda: ec2.delete_key_pair(KeyName=key_name)
            )


def _chown_home(tree: Path, user: str) -> None:
    uid = gid = None
    for line in (tree / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            uid, gid = int(fields[2]), int(fields[3])
    if uid is None or gid is None:
        raise KilnError(f"the sandbox target has no user {user} (distro ssh_user)")
    home = tree / "home" / user
    for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
        os.chown(path, uid, gid)
    (home / ".ssh").chmod(0o700)
    (home / ".ssh" / "authorized_keys").chmod(0o600)
