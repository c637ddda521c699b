"""provider=local: root filesystem layers with real debootstrap and real ansible-playbook
through the chroot connection. Needs root (the tests run as root, as CI does)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import Kiln, copy_catalog, failure_line, layer_view, mounts_under, rooted_in, seed_rootfs, start

LOCAL = ("provider=local", "distro=debian-12")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="provider=local needs root")


def layer(kiln: Kiln, role: str) -> Path:
    return kiln.state / "local" / "layers" / kiln.current(role, "local")


def etc_stamp(layer: Path) -> list[tuple[str, int, int]]:
    """What a layer's own files under etc/ are, by inode and time: its upper directory for an
    overlay layer, its whole tree for a full copy."""
    own = layer / "upper" if (layer / "layer.json").is_file() else layer
    return sorted((str(p.relative_to(own)), p.lstat().st_ino, p.lstat().st_mtime_ns) for p in (own / "etc").rglob("*"))


def test_local_chain_reuses_layers_and_rebuilds_only_what_changed(
    kiln: Kiln, rootfs_cache: Path, layer_mode: str
) -> None:
    seed_rootfs(kiln, rootfs_cache)
    first = kiln.doit("core", "pipeline", *LOCAL, timeout=900)
    assert kiln.builds() == 4
    said = first.stderr.count("each layer is a full copy")
    assert said == (1 if layer_mode == "copies" else 0), first.stderr
    base = layer(kiln, "server-base")
    with layer_view(base) as tree:
        assert (tree / "etc/kiln-base").read_text() == "server-base built by kiln\n"
        assert (tree / "usr/bin/ansible").exists(), "server-base installs Ansible"
    with layer_view(layer(kiln, "core")) as tree:
        assert (tree / "etc/motd").exists(), "core's roles ran inside its tree"
        assert (tree / "etc/kiln-base").exists() and (tree / "usr/bin/ansible").exists(), "core sees its parent"
    with layer_view(layer(kiln, "pipeline")) as tree:
        assert (tree / "etc/pipeline-worker.conf").exists() and (tree / "etc/motd").exists()
    assert (layer(kiln, "core") / "layer.json").is_file() == (layer_mode == "overlay")
    assert not mounts_under(kiln.state), "a mount was left behind"
    # The read audit ran on every play and found nothing the manifests miss.
    assert len(list((kiln.state / "logs").rglob("*.reads"))) == 3
    assert kiln.rows("SELECT count(*) FROM builds WHERE missed_inputs IS NOT NULL")[0][0] == 0
    export = kiln.state / "exports/local/paxata/debian-12.vmi.properties"
    assert f"core={kiln.current('core', 'local')}" in export.read_text()

    again = kiln.doit("core", "pipeline", *LOCAL)
    assert kiln.builds() == 4 and "4 up to date" in again.stderr, "an unchanged layer ran a playbook"

    before = etc_stamp(base)
    old_core = kiln.current("core", "local")
    kiln.edit("provision/ansible/core.yml", "# a change\n")
    proc = kiln.doit("core", "pipeline", *LOCAL)
    assert kiln.builds() == 5, proc.stderr
    assert [r["role"] for r in kiln.rows("SELECT role FROM builds ORDER BY id DESC LIMIT 1")] == ["core"]
    assert f"from {base.name}" in proc.stderr, "core starts from the cached server-base tree"
    assert etc_stamp(base) == before, "the server-base tree was touched"
    assert not mounts_under(kiln.state)

    # The old core layer is listed with its size, then removed; the current ones stay.
    listing = kiln.doit("prune", *LOCAL, "keep=1").stdout
    assert f"{old_core}" in listing and "would be removed (layer)" in listing and "would be freed" in listing
    assert (kiln.state / "local/layers" / old_core).is_dir()
    applied = kiln.doit("prune", *LOCAL, "keep=1", "apply=1").stdout
    assert "1 image(s) removed" in applied and "freed" in applied
    assert not (kiln.state / "local/layers" / old_core).exists()
    assert layer(kiln, "core").is_dir() and base.is_dir()


FAILING = """---
- name: A play that fails
  hosts: all
  tasks:
    - name: Write a file first
      ansible.builtin.copy:
        dest: /etc/written-before-failing
        content: "x\\n"
        mode: "0644"
    - name: Fail on purpose
      ansible.builtin.command: /bin/false
"""


def test_failing_playbook_leaves_no_row_and_keeps_the_layer_only_with_debug(
    kiln: Kiln, rootfs_cache: Path, layer_mode: str
) -> None:
    seed_rootfs(kiln, rootfs_cache)
    (kiln.root / "provision/ansible/failing.yml").write_text(FAILING)
    args = ("server-base", *LOCAL, "playbook=provision/ansible/failing.yml")
    proc = kiln.doit(*args, code=1)
    line = failure_line(proc.stderr, "failed in")
    assert "play 'A play that fails', task 'Fail on purpose'" in line and ".log" in line
    assert [r["role"] for r in kiln.rows("SELECT role FROM images")] == ["base-vmi"], "a failed layer was recorded"
    assert [r["status"] for r in kiln.rows("SELECT status FROM builds WHERE role='server-base'")] == ["failed"]
    layers = kiln.state / "local/layers"
    assert not [p for p in layers.iterdir() if p.is_dir() and "server-base" in p.name], "the failed layer was kept"

    proc = kiln.doit(*args, "debug=1", code=1)
    kept = next(p for p in layers.iterdir() if p.name.startswith("failed-server-base"))
    with layer_view(kept) as tree:
        assert (tree / "etc/written-before-failing").exists()
    rerun = next(line for line in proc.stderr.splitlines() if "re-run the failing play" in line)
    assert "--start-at-task 'Fail on purpose'" in rerun and "-vvv" in rerun
    if layer_mode == "overlay":
        assert (kept / "upper/etc/written-before-failing").exists(), "the failed play's write is in its upper"
        enter = f"enter it with: doit shell server-base provider=local distro=debian-12 image={kept.name}"
        assert enter in proc.stderr and f"-i {kept / 'root'}," in rerun and "while that shell is open" in rerun
    else:
        assert f"enter it with: chroot {kept} /bin/bash" in proc.stderr
    assert not kiln.rows("SELECT * FROM images WHERE role='server-base'")
    assert not mounts_under(kiln.state)
    # Listed and removed by prune, never left to fill the disk.
    assert "would be removed (a failed or unfinished layer)" in kiln.doit("prune", *LOCAL).stdout
    kiln.doit("prune", *LOCAL, "apply=1")
    assert not kept.exists()


def test_local_needs_root_and_a_distro_it_can_make(kiln: Kiln) -> None:
    proc = kiln.doit("base-vmi", "provider=local", "distro=rocky-9", code=3)
    assert "provider local cannot make rocky-9" in proc.stderr and "dnf --installroot" in proc.stderr
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to run as another user")
    # As an unprivileged user, in a checkout it may write (pytest's own folder is root's alone).
    home = Path(tempfile.mkdtemp(prefix="kiln-nonroot-"))
    try:
        repo = copy_catalog(home / "repo")
        subprocess.run(["chmod", "-R", "a+rwX", str(home)], check=True)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        proc2 = subprocess.run(
            [*nobody, sys.executable, "-m", "doit", "base-vmi", *LOCAL],
            cwd=repo,
            env={**kiln.env, "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc2.returncode == 3, proc2.stderr
    line = failure_line(proc2.stderr, "needs root")
    assert "provider local" in line and "provider=sandbox" in line
    assert json.dumps(proc2.stderr).count("Traceback") == 0


SLOW = """---
- name: A slow play
  hosts: all
  tasks:
    - name: Take a while
      ansible.builtin.command: sleep 60
"""


def test_ctrl_c_during_a_play_leaves_no_layer_mount_or_process(kiln: Kiln, rootfs_cache: Path, layer_mode: str) -> None:
    seed_rootfs(kiln, rootfs_cache)
    (kiln.root / "provision/ansible/slow.yml").write_text(SLOW)
    proc = start(kiln, {}, "server-base", *LOCAL, "playbook=provision/ansible/slow.yml")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "TASK [Take a while]" in line:
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "waiting for server-base/debian-12/local to stop" in err
    layers = kiln.state / "local/layers"
    assert not [p.name for p in layers.iterdir() if "server-base" in p.name], "an unfinished layer was left"
    assert not mounts_under(kiln.state)
    assert [r["status"] for r in kiln.rows("SELECT status FROM builds WHERE role='server-base'")] == ["interrupted"]
    assert not kiln.rows("SELECT * FROM images WHERE role='server-base'")
    assert rooted_in(kiln.state) == [], "a process rooted in a layer was left running"
