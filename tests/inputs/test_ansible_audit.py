"""The read audit: what the Ansible controller really opened during a play, compared with the
image's inputs. Real debootstrap trees, real ansible-playbook through the chroot connection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ansible_content import ANSIBLE, ordinary_layout, write
from conftest import Kiln, layer_view, seed_rootfs

LOCAL = ("provider=local", "distro=debian-12")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="provider=local needs root")

QUICK_BASE = """---
- name: A quick base (this test is about what plays read, not about patching)
  hosts: all
  tasks:
    - name: Record the base
      ansible.builtin.copy:
        dest: /etc/kiln-base
        content: "quick base\\n"
        mode: "0644"
"""


def test_the_audit_names_a_file_the_play_read_that_is_no_input(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    ordinary_layout(kiln.root)
    write(
        kiln.root,
        {
            f"{ANSIBLE}/server-base.yml": QUICK_BASE,
            "provision/data/hidden.txt": "read through a variable\n",
            f"{ANSIBLE}/vars/core.yml": '---\napp_port: 8080\nhidden_file: "{{ playbook_dir }}/../data/hidden.txt"\n',
        },
    )
    core = kiln.root / ANSIBLE / "core.yml"
    core.write_text(
        core.read_text()
        + "    - name: Read a file named by a variable\n      ansible.builtin.copy:\n"
        + '        content: "{{ lookup(\'file\', hidden_file) }}\\n"\n        dest: /etc/kiln-hidden\n        mode: "0644"\n'
    )
    proc = kiln.doit("core", "pipeline", *LOCAL, timeout=900)
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("kiln: warning:")]
    assert len(warnings) == 1, proc.stderr
    assert (
        "core/debian-12/local: the play read provision/data/hidden.txt, which is not an input of role core"
        in warnings[0]
    )
    missed = kiln.rows("SELECT role, missed_inputs FROM builds WHERE missed_inputs IS NOT NULL")
    assert [(r["role"], json.loads(r["missed_inputs"])) for r in missed] == [("core", ["provision/data/hidden.txt"])]
    assert "missed   provision/data/hidden.txt" in kiln.doit("why", "core", *LOCAL).stdout

    # The play really used what the manifest says it reads: filters, the collection, the role.
    with layer_view(kiln.state / "local/layers" / kiln.current("core", "local")) as tree:
        assert (tree / "etc/kiln-banner").read_text() == "WELCOME\n"
        assert (tree / "etc/kiln-hello").read_text() == "HELLO!\n"
        assert (tree / "etc/app.conf").read_text() == "port = 8080\n"
        assert (tree / "etc/kiln-tuned").is_file() and (tree / "etc/kiln-extra").is_file()
    # And the audit saw those reads (it is not blind): core's log has them beside it.
    reads = next((kiln.state / "logs").rglob("core/*.reads")).read_text()
    for rel in ("vars/core.yml", "templates/app.conf.j2", "files/motd.txt", "filter_plugins/shout.py"):
        assert str(kiln.root / ANSIBLE / rel) in reads, rel
    assert "acme/tools/plugins/filter/loud.py" in reads
