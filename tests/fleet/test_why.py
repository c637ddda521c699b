"""`doit why`: names the changed input, reads only the database and local files."""

from __future__ import annotations

from conftest import Kiln, failure_line

SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_why_names_the_changed_playbook_and_builds_nothing(kiln: Kiln) -> None:
    kiln.doit("core", "pipeline", *SANDBOX)
    fresh = kiln.doit("why", "core", *SANDBOX)
    assert "core/debian-12/us-east-1" in fresh.stdout and "is up to date" in fresh.stdout
    assert "last confirmed against the cloud" in fresh.stdout
    kiln.edit("provision/ansible/core.yml", "# a change\n")
    proc = kiln.doit("why", "core", *SANDBOX)
    assert "is stale" in proc.stdout
    assert "changed  provision/ansible/core.yml" in proc.stdout
    # `role=` says the same; a parent's change is explained through the parent.
    assert "changed  provision/ansible/core.yml" in kiln.doit("why", "role=core", *SANDBOX).stdout
    kiln.edit("provision/ansible/server-base.yml", "# another\n")
    child = kiln.doit("why", "pipeline", *SANDBOX).stdout
    assert "parent   server-base changed" in child
    assert "changed  provision/ansible/server-base.yml" in child
    assert kiln.builds() == 4, "why must never start Packer"
    assert kiln.rows("SELECT count(*) FROM images")[0][0] == 4


def test_why_refuses_unknown_or_missing_roles(kiln: Kiln) -> None:
    proc = kiln.doit("why", "nosuch", *SANDBOX, code=3)
    assert "unknown role 'nosuch'" in failure_line(proc.stderr, "unknown role")
    proc = kiln.doit("why", *SANDBOX, code=3)
    assert "name a role" in failure_line(proc.stderr, "name a role")
    assert not (kiln.state / "sandbox" / "pid").exists(), "why must not start the sandbox"
