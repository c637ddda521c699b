"""Every user mistake of the foundation: one line naming the file or variable, what is wrong and
what would be right, doit's exit code (3: a user error), never a traceback."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from conftest import Kiln, failure_line, one_line_error

SANDBOX = ("provider=sandbox", "region=us-east-1")


@pytest.mark.parametrize(
    ("argument", "words"),
    [
        ("region=us-east-9", ["variable region", "'us-east-9'", "valid:", "eu-west-1"]),
        ("region=us-east-1,,eu-west-1", ["variable region", "comma list"]),
        ("distro=windows-11", ["variable distro", "'windows-11'", "valid:", "debian-12, rocky-9"]),
        ("customer=acme", ["variable customer", "'acme'", "valid: paxata"]),
        ("provider=gcp", ["variable provider", "'gcp'", "valid: aws, azure, local, sandbox"]),
        ("force=yes", ["variable force", "'yes'", "valid: 0, 1, chain"]),
        ("regoin=us-east-1", ["variable regoin", "unknown variable", "valid:", "region"]),
        ("playbook=provision/ansible/nope.yml", ["variable playbook", "nope.yml", "does not exist"]),
    ],
)
def test_bad_variables_are_one_line(kiln: Kiln, argument: str, words: list[str]) -> None:
    proc = kiln.doit("core", "provider=sandbox", argument, code=3)
    one_line_error(proc.stderr, *words)
    assert kiln.builds() == 0


@pytest.mark.parametrize(
    ("path", "old", "new", "words"),
    [
        (
            "distros/debian-12/distro.toml",
            'ssh_user = "admin"',
            "ssh_user = ",
            ["distros/debian-12/distro.toml", "malformed TOML", "line 3"],
        ),
        (
            "packer/core/role.toml",
            "description",
            "flavour = 'x'\ndescription",
            ["packer/core/role.toml", "unknown key 'flavour'", "valid keys: description"],
        ),
        (
            "packer/core/role.toml",
            "description",
            "refresh = 30\ndescription",
            ["packer/core/role.toml", "key 'refresh' must be a string"],
        ),
        (
            "customers/paxata/customer.toml",
            'regions = ["us-east-1", "us-west-2", "eu-west-1"]',
            "regions = 'us-east-1'",
            ["customers/paxata/customer.toml", "key 'regions' must be a list"],
        ),
        (
            "distros/debian-12/distro.toml",
            'owner = "136693071363"',
            "owner = 136693071363",
            ["distros/debian-12/distro.toml", "key 'aws.owner' must be a string"],
        ),
        (
            "distros/debian-12/distro.toml",
            'ansible = "remote"',
            'ansible = "ssh"',
            ["distros/debian-12/distro.toml", "'ansible' must be one of local, remote"],
        ),
        (
            "pyproject.toml",
            "[tool.kiln]",
            "[tool.kiln]\nextra = 1",
            ["pyproject.toml", "unknown key 'tool.kiln.extra'"],
        ),
    ],
)
def test_bad_catalog_files_are_one_line(kiln: Kiln, path: str, old: str, new: str, words: list[str]) -> None:
    file = kiln.root / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    proc = kiln.doit("core", *SANDBOX, code=3)
    one_line_error(proc.stderr, *words)
    listed = kiln.doit("list", code=3)
    one_line_error(listed.stderr, path)


def test_missing_required_key(kiln: Kiln) -> None:
    path = kiln.root / "packer/core/role.toml"
    path.write_text("parent = 'server-base'\n")
    proc = kiln.doit("core", *SANDBOX, code=3)
    one_line_error(proc.stderr, "packer/core/role.toml", "missing required key 'description'")


def test_unknown_parent_role(kiln: Kiln) -> None:
    path = kiln.root / "packer/core/role.toml"
    path.write_text(path.read_text().replace('parent = "server-base"', 'parent = "server-bsae"'))
    proc = kiln.doit("core", *SANDBOX, code=3)
    one_line_error(proc.stderr, "packer/core/role.toml", "unknown role 'server-bsae'", "valid: base-vmi")


def test_missing_playbook(kiln: Kiln) -> None:
    (kiln.root / "provision/ansible/pipeline.yml").unlink()
    proc = kiln.doit("pipeline", *SANDBOX, code=3)
    one_line_error(proc.stderr, "provision/ansible/pipeline.yml", "does not exist", "packer/pipeline/role.toml")
    assert kiln.builds() == 0


def test_playbook_yaml_error_names_file_and_line(kiln: Kiln) -> None:
    kiln.edit("provision/ansible/core.yml", "  roles: [common\n    - broken: {\n")
    proc = kiln.doit("core", *SANDBOX, code=3)
    line = failure_line(proc.stderr, "provision/ansible/core.yml:")
    assert "YAML error" in line


def test_undefined_template_variable(kiln: Kiln) -> None:
    kiln.edit("packer/_templates/amazon-ebs.pkr.hcl.j2", "# {{ distro.flavour }}\n")
    proc = kiln.doit("core", *SANDBOX, code=3)
    line = failure_line(proc.stderr, "undefined template variable")
    assert "packer/_templates/amazon-ebs.pkr.hcl.j2" in line
    assert "flavour" in line
    assert kiln.builds() == 0


def test_missing_packer(kiln: Kiln, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = kiln.doit("core", *SANDBOX, code=3, env={"PATH": str(empty)})
    line = failure_line(proc.stderr, "packer: not found on PATH")
    assert "install" in line


def test_missing_aws_credentials(kiln: Kiln) -> None:
    # The clean environment has no keys, empty config files and no metadata service.
    proc = kiln.doit("core", "provider=aws", "region=us-east-1", code=3)
    line = failure_line(proc.stderr, "AWS credentials: none found")
    assert "AWS_PROFILE" in line
    assert kiln.builds() == 0


def test_expired_aws_credentials(kiln: Kiln, tmp_path: Path) -> None:
    helper = tmp_path / "expired-credentials"
    helper.write_text(
        '#!/bin/sh\necho \'{"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "testing",'  # pragma: allowlist secret (fake)
        ' "SessionToken": "testing", "Expiration": "2020-01-01T00:00:00Z"}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    config = Path(kiln.env["AWS_CONFIG_FILE"])
    config.write_text(f"[default]\ncredential_process = {helper}\n")
    proc = kiln.doit("core", "provider=aws", "region=us-east-1", code=3)
    failure_line(proc.stderr, "AWS credentials: expired")
    assert kiln.builds() == 0
