"""kill -9 of kiln (and of the Packer and Ansible it started, as a CI runner's cancel does)
while a provisioned sandbox play runs: what is left, and that `doit cleanup apply=1` and the
same command again leave nothing behind and build the image. Real SIGKILL, real Packer, real
Ansible over SSH into a real chroot target; leftovers are counted with boto3 and /proc here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Kiln, kiln_processes, mounts_under, rooted_in, seed_rootfs
from test_cleanup import leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target is a chroot: it needs root")
ARGS = ("server-base", "provider=sandbox", "region=us-east-1", "provision=1", "playbook=provision/ansible/slow.yml")

SLOW = """---
- name: A play that is killed
  hosts: all
  become: true
  tasks:
    - name: Write a file
      ansible.builtin.copy:
        dest: /etc/kiln-killed
        content: "x\\n"
        mode: "0644"
    - name: Take a while
      ansible.builtin.command: sleep 120
      when: lookup('env', 'KILN_TEST_SLOW') == '1'
"""


def packer_groups(base: Path) -> set[int]:
    """Process groups of the Packer runs (and their ansible-playbook) started under base."""
    groups = set()
    for pid, what in kiln_processes(base):
        if "packer" in what.split()[0] or "ansible-playbook" in what:
            try:
                groups.add(os.getpgid(pid))
            except ProcessLookupError:
                continue
    return groups


def test_sigkill_during_a_provisioned_play_then_cleanup_and_rerun(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    (kiln.root / "provision/ansible/slow.yml").write_text(SLOW)
    kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", *ARGS],
        cwd=kiln.root,
        env={**kiln.env, "KILN_TEST_SLOW": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "TASK [Take a while]" in line:
            break
    else:
        raise AssertionError("the play never reached its slow task")
    time.sleep(1)  # the task has started inside the target
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for group in packer_groups(kiln.root):
        os.killpg(group, signal.SIGKILL)
    proc.stdout.close()

    ec2 = kiln.ec2()
    targets = kiln.state / "sandbox/targets"
    before = {
        **leftovers(ec2),
        "mounts": len(mounts_under(targets)),
        "rooted": len(rooted_in(targets)),
    }
    print(f"\nleftovers after SIGKILL during the play: {before}")
    # What the kill leaves (issue 16): the instance, the imported key pair, Packer's group, the
    # target's sshd and its session, and the target's mounts.
    assert before["instances"] == 1 and before["key pairs"] == 1 and before["groups"] == 1
    assert before["mounts"] >= 2 and before["rooted"] >= 1

    cleanup = kiln.doit("cleanup", "provider=sandbox", "region=us-east-1", "apply=1").stdout
    assert "terminated:" in cleanup and "key pair kiln-target-server-base-" in cleanup
    assert leftovers(ec2) == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 0}

    again = kiln.doit(*ARGS, timeout=600)
    assert "at once: it ran on this host and its process is gone" in again.stderr
    after = {**leftovers(ec2), "mounts": len(mounts_under(targets)), "rooted": len(rooted_in(targets))}
    print(f"leftovers after cleanup apply=1 and the same command again: {after}")
    assert after == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 0, "mounts": 0, "rooted": 0}
    assert (targets / "server-base-debian-12/etc/kiln-killed").exists()
    assert len(kiln.rows("SELECT * FROM images WHERE role='server-base'")) == 1
    assert kiln_processes(kiln.root) == [p for p in kiln_processes(kiln.root) if "sandbox_server" in p[1]]
