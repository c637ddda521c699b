"""The rest of the bad-input catalogue (tests/cli/test_errors.py has the foundation's): each is one
line naming the file or variable, the right exit code, and no traceback. All real, on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Kiln, failure_line, one_line_error, sandbox_client

SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_template_syntax_error_names_file_and_line(kiln: Kiln) -> None:
    kiln.edit("packer/_templates/amazon-ebs.pkr.hcl.j2", "{% if role.name %}\n")
    proc = kiln.doit("core", *SANDBOX, code=3)
    line = failure_line(proc.stderr, "template syntax error")
    assert "packer/_templates/amazon-ebs.pkr.hcl.j2:" in line
    assert kiln.builds() == 0


def test_missing_ansible_role(kiln: Kiln) -> None:
    path = kiln.root / "provision/ansible/core.yml"
    path.write_text(path.read_text().replace("- core_service", "- core_servcie"))
    proc = kiln.doit("core", *SANDBOX, code=3)
    line = failure_line(proc.stderr, "core_servcie")
    assert "provision/ansible/core.yml" in line and "provision/ansible/roles/" in line


def test_packer_too_old(kiln: Kiln, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "Packer v1.5.6"\n')
    fake.chmod(0o755)
    proc = kiln.doit("core", *SANDBOX, code=3, env={"PATH": f"{fake.parent}:/usr/bin:/bin"})
    line = failure_line(proc.stderr, "1.5.6")
    assert "1.6.6 or newer" in line
    assert kiln.builds() == 0


def test_vendor_filter_matching_no_image(kiln: Kiln) -> None:
    kiln.doit("sandbox")  # seeded from the shipped filter; then the filter changes
    path = kiln.root / "distros/debian-12/distro.toml"
    path.write_text(path.read_text().replace('name = "debian-12-amd64-*"', 'name = "debian-13-amd64-*"'))
    proc = kiln.doit("core", *SANDBOX, code=3)
    line = failure_line(proc.stderr, "no vendor image")
    assert "distros/debian-12/distro.toml" in line and "debian-13-amd64-*" in line and "136693071363" in line


def test_sandbox_port_taken(kiln: Kiln) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = kiln.doit("core", *SANDBOX, code=3, env={"KILN_SANDBOX_PORT": str(port)})
    line = failure_line(proc.stderr, f"port {port}")
    assert "KILN_SANDBOX_PORT" in line and "taken" in line


def test_access_denied_on_describe_images(kiln: Kiln) -> None:
    # moto's IAM authentication, on after the first 8 requests: the sandbox's start (its
    # readiness check and 4 seeding calls) and this setup's 3; kiln then runs as a user whose
    # policy lacks ec2:DescribeImages. (If seeding grows, this count grows with it.)
    endpoint = kiln.doit("sandbox", env={"INITIAL_NO_AUTH_ACTION_COUNT": "8"}).stdout.strip()
    iam = sandbox_client("iam", endpoint, "us-east-1")
    iam.create_user(UserName="builder")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ec2:RunInstances", "sts:GetCallerIdentity"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName="builder", PolicyName="too-narrow", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="builder")["AccessKey"]
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
    proc = kiln.doit("core", "region=us-east-1", code=3, env=env)
    line = failure_line(proc.stderr, "AWS permissions")
    assert "DescribeImages" in line and "denied" in line
    assert kiln.builds() == 0


@contextmanager
def mounted(args: list[str], target: Path) -> Iterator[None]:
    target.mkdir(exist_ok=True)
    proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"mount is not permitted here: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_read_only_state_folder(kiln: Kiln) -> None:
    state = kiln.state
    state.mkdir(exist_ok=True)
    with mounted(["--bind", str(state)], state):
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], capture_output=True, check=False)
        if remount.returncode != 0:
            pytest.skip("read-only remount is not permitted here")
        for args in (("core", *SANDBOX), ("list",)):
            proc = kiln.doit(*args, code=3)
            one_line_error(proc.stderr, str(state), "not writable", "Read-only file system", "[tool.kiln] state")


def test_full_disk(kiln: Kiln) -> None:
    with mounted(["-t", "tmpfs", "-o", "size=100k", "tmpfs"], kiln.state):
        proc = kiln.doit("core", *SANDBOX, code=3)
        kiln.doit("sandbox-stop", code=None)
    assert "Traceback" not in proc.stderr
    assert "disk is full" in proc.stderr or "no space left" in proc.stderr
    for line in proc.stderr.splitlines():
        if "full" in line or "no space" in line:
            assert line.startswith(("kiln: ", "ERROR: ")), line
            assert ".kiln" in line
