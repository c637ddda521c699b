"""What a change rebuilds: exactly the role whose inputs changed and its descendants."""

from __future__ import annotations

import shutil

from conftest import Kiln, copy_catalog, git_status

SANDBOX = ("provider=sandbox", "region=us-east-1")
CHAIN = ("base-vmi", "server-base", "core", "pipeline")


def built_roles(kiln: Kiln, since: int) -> list[str]:
    rows = kiln.rows("SELECT role FROM builds WHERE id > ? ORDER BY id", (since,))
    return sorted(r["role"] for r in rows)


def test_playbook_changes_rebuild_the_role_and_its_descendants(kiln: Kiln) -> None:
    kiln.doit("core", "pipeline", *SANDBOX)
    before = {r: kiln.current(r) for r in CHAIN}

    n = kiln.builds()
    kiln.edit("provision/ansible/core.yml", "# core changed\n")
    kiln.doit("core", "pipeline", *SANDBOX)
    assert built_roles(kiln, n) == ["core"]
    assert kiln.current("core") != before["core"]
    assert kiln.current("server-base") == before["server-base"]

    n = kiln.builds()
    kiln.edit("provision/ansible/server-base.yml", "# base changed\n")
    kiln.doit("core", "pipeline", *SANDBOX)
    assert built_roles(kiln, n) == ["core", "pipeline", "server-base"]
    assert kiln.current("base-vmi") == before["base-vmi"]

    # A file of the Ansible role `common`: core uses it directly, pipeline through a role
    # dependency; both rebuild, the base does not.
    n = kiln.builds()
    kiln.edit("provision/ansible/roles/common/templates/motd.j2", "# motd changed\n")
    kiln.doit("core", "pipeline", *SANDBOX)
    assert built_roles(kiln, n) == ["core", "pipeline"]

    # An extra input declared in pipeline's role.toml.
    n = kiln.builds()
    kiln.edit("provision/ansible/files/pipeline/worker.conf", "threads = 2\n")
    kiln.doit("core", "pipeline", *SANDBOX)
    assert built_roles(kiln, n) == ["pipeline"]

    # Nothing changed: nothing built.
    n = kiln.builds()
    kiln.doit("core", "pipeline", *SANDBOX)
    assert kiln.builds() == n


def test_distro_setting_rebuilds_only_that_distros_chain(kiln: Kiln) -> None:
    kiln.doit("core", "distro=debian-12,ubuntu-22.04", *SANDBOX)
    assert kiln.builds() == 6
    n = kiln.builds()
    path = kiln.root / "distros/ubuntu-22.04/distro.toml"
    path.write_text(path.read_text().replace('ssh_user = "ubuntu"', 'ssh_user = "ops"'))
    kiln.doit("core", "distro=debian-12,ubuntu-22.04", *SANDBOX)
    rows = kiln.rows("SELECT distro, role FROM builds WHERE id > ? ORDER BY id", (n,))
    assert sorted((r["distro"], r["role"]) for r in rows) == [
        ("ubuntu-22.04", "base-vmi"),
        ("ubuntu-22.04", "core"),
        ("ubuntu-22.04", "server-base"),
    ]


def test_force_rebuilds_the_named_role_alone_or_the_chain(kiln: Kiln) -> None:
    kiln.doit("core", *SANDBOX)
    n = kiln.builds()
    kiln.doit("core", "force=1", *SANDBOX)
    assert built_roles(kiln, n) == ["core"]
    n = kiln.builds()
    kiln.doit("core", "force=chain", *SANDBOX)
    assert built_roles(kiln, n) == ["base-vmi", "core", "server-base"]


def test_an_image_deregistered_behind_kilns_back_is_rebuilt(kiln: Kiln) -> None:
    kiln.doit("core", *SANDBOX)
    core = kiln.current("core")
    kiln.ec2().deregister_image(ImageId=core)
    n = kiln.builds()
    kiln.doit("core", *SANDBOX)
    assert built_roles(kiln, n) == ["core"]
    assert kiln.rows("SELECT state FROM images WHERE image_id=?", (core,))[0]["state"] == "gone"
    assert kiln.current("core") != core


def test_a_teammates_image_is_adopted_without_a_build(kiln: Kiln, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kiln.doit("core", "pipeline", *SANDBOX)
    images = {r: kiln.current(r) for r in CHAIN}
    # Another checkout at another path with its own results database, talking to the same
    # sandbox (its state folder points at the running server).
    other = Kiln(copy_catalog(tmp_path / "teammate"), kiln.env)
    (other.state / "sandbox").mkdir(parents=True)
    for name in ("pid", "port"):
        shutil.copy(kiln.state / "sandbox" / name, other.state / "sandbox" / name)
    proc = other.doit("core", "pipeline", *SANDBOX)
    assert other.builds() == 0, proc.stderr
    assert proc.stderr.count("adopted") >= 4
    assert {r: other.current(r) for r in CHAIN} == images
    origins = {r["origin"] for r in other.rows("SELECT origin FROM images")}
    assert origins == {"adopted"}
    assert git_status(other.root) == ""
