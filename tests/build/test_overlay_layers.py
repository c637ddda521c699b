"""provider=local layers as kernel overlays: a child layer is its play's changes over its parent's
stack, mounted only while the play runs or someone enters it (`doit shell`). Real debootstrap,
real Ansible through the chroot connection, real overlayfs, real doit; run as root (as CI is)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Kiln, failure_line, layer_view, mounts_under, rooted_in, seed_rootfs

LOCAL = ("provider=local", "distro=debian-12")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="provider=local needs root")

# What kiln lends a play and takes back: none of it may stay in a layer's upper directory.
SCAFFOLDING = (
    "etc/resolv.conf",
    "usr/sbin/policy-rc.d",
    "var/lib/kiln",
    "var/lib/dpkg/diversions",
    "sbin/start-stop-daemon",
    "usr/sbin/service",
    "proc",
    "dev",
)

EDIT = """  tasks:
    - name: Mark the edit
      ansible.builtin.copy:
        dest: /etc/kiln-edited
        content: "edited\\n"
        mode: "0644"
"""


def layer(kiln: Kiln, role: str) -> Path:
    return kiln.state / "local" / "layers" / kiln.current(role, "local")


def own_files(layer: Path) -> set[str]:
    """What the layer itself holds: every entry of its upper directory but the directories."""
    upper = layer / "upper"
    return {str(p.relative_to(upper)) for p in upper.rglob("*") if not p.is_dir() or p.is_symlink()}


def size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def nothing_left(kiln: Kiln) -> None:
    assert not mounts_under(kiln.state), "a mount was left behind"
    assert rooted_in(kiln.state) == [], "a process rooted in a layer was left running"
    shells = kiln.state / "work" / "shell"
    assert not (shells.is_dir() and list(shells.iterdir())), "a shell's view was left"


def test_a_chain_of_overlays_the_shell_and_an_edit_that_holds_only_its_change(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    kiln.doit("core", *LOCAL, timeout=900)
    core, base = layer(kiln, "core"), layer(kiln, "server-base")
    assert (core / "layer.json").is_file() and (base / "layer.json").is_file(), "the layers are overlays"
    assert not (core / "upper/etc/kiln-base").exists(), "the child holds a copy of its parent's file"
    assert (core / "upper/etc/motd").is_file() and (base / "upper/etc/kiln-base").is_file()
    assert size(core) < 5_000_000, f"the core layer costs {size(core)} bytes"
    nothing_left(kiln)

    # The shell sees the parent's files and the child's own; what it changes is gone after.
    script = "cat /etc/kiln-base; test -f /etc/motd && test -x /usr/bin/ansible && echo SEES-ALL\n"
    script += "touch /etc/from-the-shell; mount | grep -c ' /proc ' \n"
    proc = kiln.doit("shell", "core", *LOCAL, stdin=script)
    assert "server-base built by kiln" in proc.stdout and "SEES-ALL" in proc.stdout, proc.stdout + proc.stderr
    assert "what changes in it is discarded" in proc.stderr and "nothing stays mounted" in proc.stdout
    with layer_view(core) as tree:
        assert not (tree / "etc/from-the-shell").exists(), "the shell changed the committed layer"
    nothing_left(kiln)
    failed = kiln.doit("shell", "core", *LOCAL, stdin="exit 7\n", code=1)
    assert "ended with exit code 7" in failure_line(failed.stderr, "the shell in")
    nothing_left(kiln)

    # An edit of core.yml runs core's play alone; its new layer holds just what the play wrote.
    before, built = own_files(core), kiln.builds()
    kiln.edit("provision/ansible/core.yml", EDIT)
    kiln.doit("core", *LOCAL)
    assert kiln.builds() == built + 1
    assert [r["role"] for r in kiln.rows("SELECT role FROM builds ORDER BY id DESC LIMIT 1")] == ["core"]
    edited = layer(kiln, "core")
    assert edited != core
    assert own_files(edited) == before | {"etc/kiln-edited"}, own_files(edited) ^ before
    for rel in SCAFFOLDING:
        assert not any(f == rel or f.startswith(rel + "/") for f in own_files(edited)), f"{rel} left in the layer"
    with layer_view(edited) as tree:
        assert (tree / "etc/kiln-edited").read_text() == "edited\n"
        assert (tree / "etc/kiln-base").is_file() and (tree / "etc/motd").is_file()
    nothing_left(kiln)


def test_ctrl_c_in_the_shell_leaves_nothing_mounted(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    kiln.doit("server-base", *LOCAL, timeout=900)
    # As a terminal does it: SIGINT to the whole foreground process group, kiln and the shell.
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", "shell", "server-base", *LOCAL],
        cwd=kiln.root,
        env=kiln.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("echo IN-THE-SHELL; sleep 60\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "IN-THE-SHELL"
    assert mounts_under(kiln.state), "the shell runs in a mounted view"
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    assert proc.returncode == 1, err  # the shell's own end (killed by Ctrl-C) is the command's
    assert "was ended by SIGINT" in failure_line(err, "the shell in")
    nothing_left(kiln)


def test_prune_keeps_a_parent_a_kept_child_sits_on(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    kiln.doit("core", *LOCAL, timeout=900)
    s1, c1 = kiln.current("server-base", "local"), kiln.current("core", "local")
    kiln.doit("promote", "core", "channel=prod", *LOCAL)
    kiln.edit("provision/ansible/core.yml", "# a change\n")
    kiln.doit("core", *LOCAL)
    c2 = kiln.current("core", "local")
    kiln.edit("provision/ansible/server-base.yml", "# a change\n")
    kiln.doit("core", *LOCAL, timeout=900)
    s2, c3 = kiln.current("server-base", "local"), kiln.current("core", "local")
    assert len({s1, s2, c1, c2, c3}) == 5

    plan = kiln.doit("prune", *LOCAL, "keep=1").stdout
    lines = {name: next(ln for ln in plan.splitlines() if name in ln) for name in (s1, c2)}
    assert "would be removed (layer)" in lines[c2], plan
    assert f"used by layer {c1}, which sits on it" in lines[s1], plan
    kiln.doit("prune", *LOCAL, "keep=1", "apply=1")
    layers = kiln.state / "local/layers"
    assert not (layers / c2).exists(), "the unused old core layer was kept"
    for kept in (s1, c1, s2, c3):
        assert (layers / kept).is_dir(), f"{kept} was removed"
    # The promoted layer is still whole: its parent's files are there under it.
    proc = kiln.doit("shell", "core", *LOCAL, f"image={c1}", stdin="cat /etc/kiln-base\n")
    assert "server-base built by kiln" in proc.stdout
    nothing_left(kiln)


BROKEN_VERIFY = """---
- name: A test with a mistake in it
  hosts: all
  tasks:
    - name: Use a module that does not exist
      kiln.nowhere.no_such_module:
        path: /etc/motd
"""


def test_a_syntax_finding_beside_the_play_stops_the_build_before_the_commit(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    kiln.doit("server-base", *LOCAL, timeout=900)
    verify = kiln.root / "provision/ansible/verify/core.yml"
    verify.parent.mkdir(parents=True, exist_ok=True)
    verify.write_text(BROKEN_VERIFY)
    proc = kiln.doit("core", *LOCAL, code=3)
    assert "provision/ansible/verify/core.yml" in failure_line(proc.stderr, "no_such_module")
    log = Path(kiln.rows("SELECT log_path FROM builds WHERE role='core'")[-1][0]).read_text()
    assert "TASK [common" in log, "the play did not run beside the check"
    assert not kiln.rows("SELECT * FROM images WHERE role='core'"), "a layer was recorded"
    assert not [p for p in (kiln.state / "local/layers").iterdir() if "core" in p.name], "a core layer was left"
    nothing_left(kiln)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("core", "provider=sandbox", "region=us-east-1"), ["variable provider", "provider=local, not sandbox"]),
        (("core", *LOCAL), ["no current layer", "build it first: doit core provider=local distro=debian-12"]),
        (("core", *LOCAL, "image=core-nope"), ["variable image", "'core-nope'", "layers of core: (none)"]),
        (("core", *LOCAL, "image=../etc"), ["variable image", "'../etc'"]),
        (LOCAL, ["name one role", "roles: base-vmi, core"]),
        (("nope", *LOCAL), ["'nope' is not a role", "roles: base-vmi, core"]),
    ],
)
def test_shell_mistakes_are_one_line(kiln: Kiln, args: tuple[str, ...], words: list[str]) -> None:
    proc = kiln.doit("shell", *args, code=3)
    line = failure_line(proc.stderr, words[0])
    assert line.startswith("kiln: shell: ") and all(w in line for w in words), line
    assert not mounts_under(kiln.state)
