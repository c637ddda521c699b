"""`doit lint`: packer validate on every role's template (both Ansible modes) and
ansible-playbook --syntax-check on every playbook, with the real Packer and Ansible; a finding is
one line naming the file and line, exit 1, and stops a build before it starts."""

from __future__ import annotations

from pathlib import Path

from conftest import Kiln

from tasks.checks.lint import ansible_problem, packer_problem, split_marks

ROLES = ("base-vmi", "server-base", "core", "pipeline")
CHECKS = len(ROLES) * 2 + 3  # every role for debian-12 (remote) and centos-7 (local); 3 playbooks


def kiln_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("kiln: ")]


def lint_outputs(kiln: Kiln) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (kiln.state / "lint").rglob("*.pkr.hcl")}


def test_lint_validates_both_ansible_modes_and_reruns_nothing_when_unchanged(kiln: Kiln) -> None:
    proc = kiln.doit("lint")
    assert f"kiln: lint: {CHECKS} checks ok ({CHECKS} run, 0 up to date)" in proc.stderr
    lint = kiln.state / "lint" / "paxata"
    for role in ROLES:
        # debian-12 is the customer's distro; centos-7 is added as the catalog's ansible-local distro.
        assert (lint / "debian-12" / f"{role}.pkr.hcl").is_file()
        assert (lint / "centos-7" / f"{role}.pkr.hcl").is_file()
    remote = (lint / "debian-12" / "core.pkr.hcl").read_text()
    local = (lint / "centos-7" / "core.pkr.hcl").read_text()
    assert 'provisioner "ansible" {' in remote and "ansible-local" not in remote
    assert 'provisioner "ansible-local" {' in local
    assert "provisioner" not in (lint / "debian-12" / "base-vmi.pkr.hcl").read_text()
    assert not list((kiln.state / "lint").rglob("*.log"))
    # The build's renders are not the lint's: none was written.
    assert not (kiln.state / "rendered").exists()

    before = lint_outputs(kiln)
    again = kiln.doit("lint")
    assert f"kiln: lint: all {CHECKS} checks up to date" in again.stderr
    assert lint_outputs(kiln) == before

    # A playbook change re-checks that playbook alone: Packer sees only its path, so the
    # templates that name it are not validated again.
    kiln.edit("provision/ansible/core.yml", "# a comment\n")
    third = kiln.doit("lint")
    assert f"kiln: lint: {CHECKS} checks ok (1 run, {CHECKS - 1} up to date)" in third.stderr
    assert lint_outputs(kiln) == before


def test_yaml_error_names_file_and_line_and_stops_the_build(kiln: Kiln) -> None:
    kiln.edit("provision/ansible/core.yml", "  - bad: [\n")
    line = len((kiln.root / "provision/ansible/core.yml").read_text().splitlines())
    proc = kiln.doit("core", "provider=sandbox", "region=us-east-1", code=3)
    lines = kiln_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"kiln: lint provision/ansible/core.yml: provision/ansible/core.yml:{line}:")
    assert "ansible-playbook --syntax-check: YAML" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert kiln.builds() == 0  # no Packer build started: nothing was spent
    # The sandbox the run began starting in the background was left recorded, not orphaned.
    assert "kiln: sandbox stopped" in kiln.doit("sandbox-stop").stderr

    lint = kiln.doit("lint", code=3)
    assert kiln_lines(lint.stderr) == lines


def test_hcl_error_names_template_and_line(kiln: Kiln) -> None:
    template = kiln.root / "packer/_templates/amazon-ebs.pkr.hcl.j2"
    good = "  instance_type          = var.instance_type\n"
    text = template.read_text()
    assert good in text
    template.write_text(text.replace(good, "  instance_type = = var.instance_type\n"))
    line = text[: text.index(good)].count("\n") + 1
    proc = kiln.doit("lint", code=3)
    lines = kiln_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    message = lines[0]
    assert f": packer/_templates/amazon-ebs.pkr.hcl.j2:{line}: packer validate: Invalid expression" in message
    # ... and the rendered file's own line, which differs (the variables partial is included above).
    assert "(rendered .kiln/lint/paxata/" in message
    rendered = message.split("(rendered ", 1)[1].split(";", 1)[0]
    path, rendered_line = rendered.rsplit(":", 1)
    assert (kiln.root / path).read_text().splitlines()[
        int(rendered_line) - 1
    ].strip() == "instance_type = = var.instance_type"

    build = kiln.doit("core", "provider=sandbox", "region=us-east-1", code=3)
    assert len(kiln_lines(build.stderr)) == 1 and f"amazon-ebs.pkr.hcl.j2:{line}:" in build.stderr
    assert kiln.builds() == 0


def test_ansible_local_partial_is_validated(kiln: Kiln) -> None:
    """centos-7 (ansible-local) is validated even when the command line names another distro."""
    partial = kiln.root / "packer/_templates/_ansible_local.pkr.hcl.j2"
    text = partial.read_text()
    partial.write_text(text.replace("playbook_dir    =", "playbook_dirr   ="))
    line = next(i for i, x in enumerate(partial.read_text().splitlines(), 1) if "playbook_dirr" in x)
    proc = kiln.doit("lint", "distro=rocky-9", code=3)
    lines = kiln_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "/centos-7: packer/_templates/_ansible_local.pkr.hcl.j2:" + f"{line}: packer validate:" in lines[0]
    assert 'named "playbook_dirr" is not expected' in lines[0]
    assert "provisioner ansible-local" in lines[0]


def test_split_marks_maps_each_line_to_its_template_line() -> None:
    marked = '\x1ea.j2\x1d1\x1fone\n\x1ea.j2\x1d2\x1f  x = VALUE\x1ea.j2\x1d2\x1f"\nVALUE ONLY\n\x1eb.j2\x1d7\x1fthree'
    text, where = split_marks(marked)
    assert text == 'one\n  x = VALUE"\nVALUE ONLY\nthree'
    assert where == [("a.j2", 1), ("a.j2", 2), ("a.j2", 2), ("b.j2", 7)]


def test_tool_output_parsing() -> None:
    out = (
        "Error: Unsupported argument\n\n  on /x/core.pkr.hcl line 79:\n  (source code not available)\n\n"
        'An argument named "ssh_usernme" is not expected here.\n\nError: Other\n'
    )
    assert packer_problem(out) == (
        'Unsupported argument: An argument named "ssh_usernme" is not expected here',
        "/x/core.pkr.hcl",
        79,
        2,
    )
    # ansible-core before 2.19 words it differently.
    old = (
        "ERROR! We were unable to read either as JSON nor YAML\n\n"
        "The error appears to be in '/repo/provision/ansible/core.yml': line 8, column 3, but may\n"
    )
    assert ansible_problem(Path("/repo"), old) == (
        "We were unable to read either as JSON nor YAML",
        "provision/ansible/core.yml:8:3",
    )


def test_playbook_override_is_checked_before_the_build(kiln: Kiln) -> None:
    (kiln.root / "provision/ansible/try.yml").write_text(
        "- hosts: all\n  tasks:\n    - name: x\n      debug: {msg: [\n"
    )
    proc = kiln.doit("core", "playbook=provision/ansible/try.yml", "provider=sandbox", "region=us-east-1", code=3)
    lines = kiln_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kiln: lint provision/ansible/try.yml: provision/ansible/try.yml:5:")
    assert kiln.builds() == 0
