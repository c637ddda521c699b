"""playbook=PATH and debug=1 apply to the roles named on the command line only."""

from __future__ import annotations

from conftest import Kiln, one_line_error

SANDBOX = ("provider=sandbox", "region=us-east-1")
EXPERIMENT = "---\n- name: An experiment\n  hosts: all\n  tasks: []\n"


def test_override_never_replaces_the_mainline_or_reaches_an_ancestor(kiln: Kiln) -> None:
    kiln.doit("core", "pipeline", *SANDBOX)
    export = kiln.state / "exports/sandbox/paxata/debian-12/us-east-1.vmi.properties"
    mainline = export.read_text()
    main_core = kiln.current("core")
    (kiln.root / "provision/ansible/experiment.yml").write_text(EXPERIMENT)
    proc = kiln.doit("core", *SANDBOX, "playbook=provision/ansible/experiment.yml")
    assert kiln.builds() == 5, "only core is built with the override"
    assert "server-base/debian-12/us-east-1: up to date" in proc.stderr
    row = kiln.rows("SELECT * FROM images WHERE playbook_override IS NOT NULL")[0]
    assert row["role"] == "core" and row["playbook_override"] == "provision/ansible/experiment.yml"
    assert row["fingerprint"] != kiln.rows("SELECT fingerprint FROM images WHERE image_id=?", (main_core,))[0][0]
    tags = {t["Key"]: t["Value"] for t in kiln.ec2().describe_images(ImageIds=[row["image_id"]])["Images"][0]["Tags"]}
    assert tags["playbook-override"] == "provision/ansible/experiment.yml"
    assert export.read_text() == mainline, "the override changed the mainline export"
    # The mainline stays current; the override image is found again, not rebuilt.
    assert "core/debian-12/us-east-1: up to date" in kiln.doit("core", *SANDBOX).stderr
    assert "up to date" in kiln.doit("core", *SANDBOX, "playbook=provision/ansible/experiment.yml").stderr
    assert kiln.builds() == 5


def test_debug_without_a_terminal_is_refused(kiln: Kiln) -> None:
    proc = kiln.doit("core", *SANDBOX, "debug=1", code=3)
    one_line_error(proc.stderr, "variable debug", "terminal")
    assert kiln.builds() == 0
