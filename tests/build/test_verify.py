"""Verify plays: the role's test, run on the machine after its play and before the image, on
provider=local (the chroot) and the provisioned sandbox (Packer's second Ansible provisioner),
with real Ansible. A failure leaves no image; a change to the test rebuilds that role only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import Kiln, failure_line, mounts_under, one_line_error, rooted_in, seed_rootfs

LOCAL = ("provider=local", "distro=debian-12")
SANDBOX = ("provider=sandbox", "region=us-east-1")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="provider=local needs root")

PASSING = """---
- name: Verify core
  hosts: all
  gather_facts: false
  tasks:
    - name: The motd names the customer
      ansible.builtin.command: grep -q paxata /etc/motd
      changed_when: false
"""

FAILING = """---
- name: Verify core
  hosts: all
  gather_facts: false
  tasks:
    - name: The motd names the customer
      ansible.builtin.command: grep -q paxata /etc/motd
      changed_when: false
    - name: A file core never writes is there
      ansible.builtin.stat:
        path: /etc/not-written-by-core
      register: missing
    - name: Assert the file exists
      ansible.builtin.assert:
        that: missing.stat.exists
"""


def write_verify(kiln: Kiln, text: str) -> None:
    path = kiln.root / "provision/ansible/verify/core.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def core_rows(kiln: Kiln) -> list[dict[str, object]]:
    return [dict(r) for r in kiln.rows("SELECT * FROM images WHERE role='core'")]


def test_local_verify_gates_the_layer_and_is_an_input(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    write_verify(kiln, FAILING)
    proc = kiln.doit("core", *LOCAL, code=1, timeout=900)
    line = failure_line(proc.stderr, "verify failed in")
    assert "provision/ansible/verify/core.yml" in line and "Assert the file exists" in line, line
    assert core_rows(kiln) == [], "a failed verify left an image row"
    build = kiln.rows("SELECT * FROM builds WHERE role='core'")[-1]
    assert build["status"] == "verify failed" and build["image_id"] is None
    assert "Assert the file exists" in Path(build["log_path"]).read_text()
    layers = kiln.state / "local/layers"
    assert not [p for p in layers.iterdir() if p.name.startswith(("core-", ".core-"))], "the failed layer was kept"
    assert not mounts_under(kiln.state) and rooted_in(kiln.state) == []

    write_verify(kiln, PASSING)
    built = kiln.builds()
    kiln.doit("core", *LOCAL)
    assert kiln.builds() == built + 1
    [row] = core_rows(kiln)
    assert row["verified"] == "passed"
    images = kiln.doit("images", *LOCAL).stdout
    assert any(ln.startswith("core") and " passed " in ln for ln in images.splitlines()), images

    # A change to the test alone rebuilds core (it is an input), not its parent.
    kiln.edit("provision/ansible/verify/core.yml", "# a stricter test, one day\n")
    why = kiln.doit("why", "core", *LOCAL).stdout
    assert "provision/ansible/verify/core.yml" in why, why
    kiln.doit("core", *LOCAL)
    assert kiln.builds() == built + 2
    assert [r["role"] for r in kiln.rows("SELECT role FROM builds ORDER BY id DESC LIMIT 1")] == ["core"]

    # doit verify: again against the current layer, through an overlay; the layer is unchanged.
    current = kiln.current("core", "local")
    layer = kiln.state / "local/layers" / current
    before = sorted((str(p.relative_to(layer)), p.lstat().st_mtime_ns) for p in layer.rglob("*"))
    out = kiln.doit("verify", "core", *LOCAL)
    assert f"{current} passed provision/ansible/verify/core.yml" in out.stdout
    assert kiln.builds() == built + 2, "doit verify rebuilt"
    assert sorted((str(p.relative_to(layer)), p.lstat().st_mtime_ns) for p in layer.rglob("*")) == before
    assert not mounts_under(kiln.state), "the overlay was left mounted"
    # A verify play that now fails says so for the current image, which is marked failed.
    write_verify(kiln, FAILING)
    proc = kiln.doit("verify", "core", *LOCAL, code=1)
    assert "Assert the file exists" in failure_line(proc.stderr, "verify failed in")
    assert kiln.rows("SELECT verified FROM images WHERE image_id=?", (current,))[0][0] == "failed"


def test_provisioned_sandbox_runs_the_verify_provisioner(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    write_verify(kiln, FAILING)
    proc = kiln.doit("core", *SANDBOX, "provision=1", code=1, timeout=900)
    line = failure_line(proc.stderr, "verify failed in")
    assert "provision/ansible/verify/core.yml" in line and "Assert the file exists" in line, line
    assert core_rows(kiln) == []
    assert kiln.rows("SELECT status FROM builds WHERE role='core'")[-1][0] == "verify failed"
    ec2 = kiln.ec2()
    assert [i for i in ec2.describe_images(Owners=["self"])["Images"] if i["Name"].startswith("core-")] == []
    rendered = (kiln.state / "rendered/sandbox-provisioned/paxata/debian-12/core.pkr.hcl").read_text()
    assert rendered.count('provisioner "ansible"') == 2 and "var.verify_file" in rendered

    write_verify(kiln, PASSING)
    kiln.doit("core", *SANDBOX, "provision=1", timeout=900)
    [row] = core_rows(kiln)
    assert row["verified"] == "passed"
    # The shell and file provisioners brought the machine's package list back: its inventory.
    doc = json.loads(kiln.doit("packages", "core", *SANDBOX, "provision=1").stdout)
    assert doc["specVersion"] == "1.5" and any(c["name"] == "openssh-server" for c in doc["components"])
    out = kiln.doit("verify", "core", *SANDBOX, "provision=1")
    assert "passed provision/ansible/verify/core.yml" in out.stdout
    assert rooted_in(kiln.state / "sandbox") == []


def test_sandbox_without_a_machine_says_unverified_once(kiln: Kiln) -> None:
    write_verify(kiln, PASSING)
    proc = kiln.doit("core", "provider=sandbox", "region=us-east-1,eu-west-1")
    assert proc.stderr.count("core: not verified") == 1, proc.stderr
    assert {r["verified"] for r in core_rows(kiln)} == {"unverified"}
    images = kiln.doit("images", "provider=sandbox").stdout
    assert all(" unverified " in ln for ln in images.splitlines() if ln.startswith("core")), images
    failure_line(kiln.doit("verify", "core", *SANDBOX, code=3).stderr, "variable provider", "provision=1")
    failure_line(kiln.doit("packages", "core", *SANDBOX, code=3).stderr, "no package inventory", "provision=1")
    failure_line(kiln.doit("verify", "nosuch", *SANDBOX, code=3).stderr, "doit verify", "'nosuch' is not a role")
    failure_line(kiln.doit("verify", "pipeline", *SANDBOX, code=3).stderr, "packer/pipeline/role.toml", "no verify")
    # A verify file named in role.toml must exist: one line before anything runs.
    role_toml = kiln.root / "packer/pipeline/role.toml"
    kept = role_toml.read_text()
    kiln.edit("packer/pipeline/role.toml", 'verify = "provision/ansible/verify/nope.yml"\n')
    one_line_error(kiln.doit("pipeline", *SANDBOX, code=3).stderr, "packer/pipeline/role.toml", "key 'verify'")
    role_toml.write_text(kept)  # a catalog mistake also stops `doit sandbox-stop`: mend it for the teardown
