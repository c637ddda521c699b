"""The sandbox with provision=1: Packer's real Ansible provisioner, rendered exactly as for AWS,
provisions a local root filesystem over SSH on loopback; nothing is left running or mounted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ansible_content import ordinary_layout
from conftest import Kiln, one_line_error, rooted_in, seed_rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target is a chroot: it needs root")
SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_sandbox_runs_the_real_ansible_provisioner_against_a_local_target(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    ordinary_layout(kiln.root)  # core's play as teams write it: vars_files, includes, filters, a collection
    proc = kiln.doit("core", *SANDBOX, "provision=1", timeout=900)
    assert kiln.builds() == 3
    # Packer's Ansible ran under the read audit, which found nothing the manifests miss.
    assert "acme/tools/plugins/filter/loud.py" in next((kiln.state / "logs").rglob("core/*.reads")).read_text()
    assert kiln.rows("SELECT count(*) FROM builds WHERE missed_inputs IS NOT NULL")[0][0] == 0, proc.stderr
    assert (kiln.state / "sandbox/targets/core-debian-12/etc/kiln-banner").read_text() == "WELCOME\n"
    targets = kiln.state / "sandbox" / "targets"
    assert (targets / "server-base-debian-12/etc/kiln-base").read_text() == "server-base built by kiln\n"
    assert "paxata" in (targets / "core-debian-12/etc/motd").read_text(), "core's play wrote its motd"
    # Packer ran Ansible: its log holds the play's recap, and the template is the AWS one.
    log = Path(kiln.rows("SELECT log_path FROM builds WHERE role='core'")[0][0]).read_text()
    assert "PLAY RECAP" in log and "failed=0" in log
    rendered = (kiln.state / "rendered/sandbox-provisioned/paxata/debian-12/core.pkr.hcl").read_text()
    assert 'provisioner "ansible"' in rendered and "use_proxy" in rendered and "provider aws" in rendered
    assert "answers SSH on 127.0.0.1:" in proc.stderr
    # Nothing left behind: no process rooted in a target, no mount, no key pair, no instance.
    assert rooted_in(targets) == []
    assert str(targets.resolve()) not in Path("/proc/self/mountinfo").read_text()
    ec2 = kiln.ec2()
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    states = {i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert states <= {"terminated"}
    assert not list(kiln.state.rglob("target_key*")), "the target's private key was left on disk"
    # Provisioned images have their own fingerprints: the plain sandbox chain is another one.
    assert "up to date" in kiln.doit("core", *SANDBOX, "provision=1").stderr
    assert kiln.builds() == 3


def test_provision_is_refused_where_it_cannot_apply(kiln: Kiln) -> None:
    one_line_error(kiln.doit("core", "provider=aws", "provision=1", code=3).stderr, "variable provision", "sandbox")
    proc = kiln.doit("core", *SANDBOX, "distro=centos-7", "provision=1", code=3)
    one_line_error(proc.stderr, "distros/centos-7/distro.toml", "remote")
