"""Faults around a build: a crashing Packer, a Packer that makes nothing, a tag call that fails
after the image was made, the cloud going away. Each leaves the database consistent, and a later
run converges. Only the Packer binary is stood in for (a wrapper around the real one)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
from conftest import Kiln, failure_line, sandbox_client, wrapper

SANDBOX = ("provider=sandbox", "region=us-east-1")


def converges(kiln: Kiln) -> None:
    kiln.doit("core", *SANDBOX)
    assert {r["role"] for r in kiln.rows("SELECT role FROM images WHERE state='available'")} == {
        "base-vmi",
        "server-base",
        "core",
    }
    kiln.doit("core", *SANDBOX)  # and then stays put
    assert kiln.rows("SELECT count(*) FROM builds WHERE status='running'")[0][0] == 0


def test_packer_crashing(kiln: Kiln, tmp_path: Path) -> None:
    env = wrapper(tmp_path, 'echo "panic: runtime error: invalid memory address"; exit 2')
    proc = kiln.doit("core", *SANDBOX, code=1, env=env)
    line = failure_line(proc.stderr, "packer build failed")
    assert "panic" in line and ".log" in line
    assert kiln.rows("SELECT status FROM builds")[0]["status"] == "failed"
    assert not kiln.rows("SELECT * FROM images")
    converges(kiln)


def test_packer_finishing_without_an_artifact(kiln: Kiln, tmp_path: Path) -> None:
    env = wrapper(tmp_path, 'echo "1,,ui,say,==> Builds finished but no artifacts were created."; exit 0')
    proc = kiln.doit("core", *SANDBOX, code=1, env=env)
    failure_line(proc.stderr, "zero artifacts")
    assert not kiln.rows("SELECT * FROM images")
    converges(kiln)


def test_tagging_failing_after_the_image_was_made(kiln: Kiln, tmp_path: Path) -> None:
    # Packer runs as a user that may tag; kiln as one denied ec2:CreateTags, so its fingerprint
    # tag fails after the image exists. moto's IAM authentication starts after the first 11
    # requests: the sandbox's start (5) and this setup (6).
    endpoint = kiln.doit("sandbox", env={"INITIAL_NO_AUTH_ACTION_COUNT": "11"}).stdout.strip()
    iam = sandbox_client("iam", endpoint, "us-east-1")
    keys = {}
    for user, actions in (
        ("packer", ["ec2:*", "iam:*", "sts:*", "dynamodb:*"]),
        ("kiln", ["ec2:Describe*", "ec2:DeregisterImage", "ec2:DeleteSnapshot", "sts:*", "dynamodb:*"]),
    ):
        iam.create_user(UserName=user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    env = wrapper(
        tmp_path,
        f"export AWS_ACCESS_KEY_ID={keys['packer']['AccessKeyId']} "
        f"AWS_SECRET_ACCESS_KEY={keys['packer']['SecretAccessKey']}",
    )
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": keys["kiln"]["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": keys["kiln"]["SecretAccessKey"],
        }
    )
    proc = kiln.doit("base-vmi", "region=eu-west-1", code=1, env=env)
    line = failure_line(proc.stderr, "could not be tagged")
    assert "it was deregistered and will be rebuilt next run" in line
    image_id = line.split("kiln: base-vmi/debian-12/eu-west-1: ")[1].split()[0]
    assert kiln.rows("SELECT status FROM builds")[0]["status"] == "failed"
    assert not kiln.rows("SELECT * FROM images"), "an untagged image must never be recorded"
    ec2 = boto3.client(
        "ec2",
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id=keys["packer"]["AccessKeyId"],
        aws_secret_access_key=keys["packer"]["SecretAccessKey"],
    )
    assert not ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"]
    # Given the permission, the next run converges.
    iam_kiln = {
        **env,
        "AWS_ACCESS_KEY_ID": keys["packer"]["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": keys["packer"]["SecretAccessKey"],
    }
    kiln.doit("base-vmi", "region=eu-west-1", env=iam_kiln)
    assert kiln.rows("SELECT role, state FROM images")[0]["state"] == "available"


def test_the_cloud_going_away_mid_run(kiln: Kiln, tmp_path: Path) -> None:
    kiln.doit("server-base", *SANDBOX)
    # The sandbox stops just as the next build starts: Packer cannot reach it.
    env = wrapper(tmp_path, f"kill -TERM -- -$(cat {kiln.state / 'sandbox' / 'pid'})")
    proc = kiln.doit("core", *SANDBOX, "force=1", code=1, env=env)
    failure_line(proc.stderr, "packer build failed")
    assert "Traceback" not in proc.stderr
    statuses = [r["status"] for r in kiln.rows("SELECT status FROM builds ORDER BY id")]
    assert statuses == ["ok", "ok", "failed"]
    # A new sandbox knows none of the old images: they are marked gone and rebuilt.
    converges(kiln)
    assert {r["state"] for r in kiln.rows("SELECT state FROM images")} == {"available", "gone"}
