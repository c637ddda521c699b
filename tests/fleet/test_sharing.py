"""Sharing ([distribution] in customer.toml): every image kiln builds, copies or adopts gets
launch permission for the listed accounts, organizations and OUs, its snapshots create-volume
permission for the accounts; the current list is applied, so a name removed loses them. Real
Packer, real moto (launch permissions, snapshot permissions and IAM are moto's own)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from conftest import Kiln, failure_line, sandbox_client, wrapper

CUSTOMER = "customers/paxata/customer.toml"
ORG = "arn:aws:organizations::111122223333:organization/o-exampleorg1"
OU = "arn:aws:organizations::111122223333:ou/o-exampleorg1/ou-ab12-exampleou"


def distribution(accounts: list[str]) -> str:
    return (
        f"\n[distribution]\naccounts = {json.dumps(accounts)}\norganizations = [{json.dumps(ORG)}]\n"
        f"ous = [{json.dumps(OU)}]\n"
    )


def set_accounts(kiln: Kiln, accounts: list[str]) -> None:
    path = kiln.root / CUSTOMER
    text = path.read_text()
    path.write_text(re.sub(r"(?m)^accounts = .*$", f"accounts = {json.dumps(accounts)}", text))


def launch(kiln: Kiln, region: str, image_id: str) -> set[tuple[str, str]]:
    perms = kiln.ec2(region).describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
    return {(k, v) for p in perms["LaunchPermissions"] for k, v in p.items()}


def volume(kiln: Kiln, region: str, image_id: str) -> set[str]:
    ec2: Any = kiln.ec2(region)
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    users: set[str] = set()
    for m in image["BlockDeviceMappings"]:
        perms = ec2.describe_snapshot_attribute(SnapshotId=m["Ebs"]["SnapshotId"], Attribute="createVolumePermission")
        users |= {p["UserId"] for p in perms["CreateVolumePermissions"] if "UserId" in p}
    return users


def calls(stderr: str) -> int:
    found = re.search(r"\((\d+) cloud calls\)", stderr)
    assert found, stderr
    return int(found.group(1))


def test_build_and_copy_are_shared_and_a_removed_account_loses_them(kiln: Kiln) -> None:
    kiln.edit(CUSTOMER, distribution(["111122223333", "444455556666"]))
    both = {("UserId", "111122223333"), ("UserId", "444455556666"), ("OrganizationArn", ORG)}
    both.add(("OrganizationalUnitArn", OU))

    built = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    assert "shared with accounts 111122223333, 444455556666; organizations o-exampleorg1; ous ou-ab12-exampleou" in (
        built.stderr
    )
    copied = kiln.doit("base-vmi", "provider=sandbox", "region=eu-west-1")
    assert "1 copied" in copied.stderr and kiln.builds() == 1
    images = {r: kiln.current("base-vmi", r) for r in ("us-east-1", "eu-west-1")}
    for region, image in images.items():
        assert launch(kiln, region, image) == both, region
        assert volume(kiln, region, image) == {"111122223333", "444455556666"}, region

    # Recorded: a run with nothing to do makes no sharing call (the usual one lookup of kiln's
    # images and one of the vendor's per region).
    noop = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1,eu-west-1")
    assert "shared with" not in noop.stderr and calls(noop.stderr) == 4

    shown = kiln.doit("images", "provider=sandbox").stdout.splitlines()
    assert shown[0].split()[-4:] == ["shared", "status", "size", "build"]
    for line in shown[1:]:
        if line.startswith("base-vmi"):
            assert "111122223333,444455556666," + "o-exampleorg1,ou-ab12-exampleou" in line, line
    doc = json.loads(kiln.doit("images", "provider=sandbox", "format=json").stdout)
    assert {tuple(i["shared_with"]) for i in doc["images"]} == {("111122223333", "444455556666", ORG, OU)}

    # The current set, not appended: the account removed loses image and snapshots alike.
    set_accounts(kiln, ["111122223333"])
    after = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1,eu-west-1")
    assert after.stderr.count("no longer with 444455556666") == 2
    assert kiln.builds() == 1
    for region, image in images.items():
        assert launch(kiln, region, image) == both - {("UserId", "444455556666")}, region
        assert volume(kiln, region, image) == {"111122223333"}, region

    # An empty list makes the images private again.
    set_accounts(kiln, [])
    path = kiln.root / CUSTOMER
    path.write_text(path.read_text().replace(f"organizations = [{json.dumps(ORG)}]", "organizations = []"))
    path.write_text(path.read_text().replace(f"ous = [{json.dumps(OU)}]", "ous = []"))
    private = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1,eu-west-1")
    assert private.stderr.count("is private to this account") == 2
    for region, image in images.items():
        assert launch(kiln, region, image) == set() and volume(kiln, region, image) == set()


def test_an_adopted_image_is_shared_too(kiln: Kiln) -> None:
    kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    image = kiln.current("base-vmi")
    # A teammate's database knows nothing of it: the image is adopted, and shared.
    for db in kiln.state.glob("results.sqlite*"):
        db.unlink()
    kiln.edit(CUSTOMER, distribution(["111122223333"]))
    proc = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    assert f"adopted {image}" in proc.stderr and f"{image} shared with accounts 111122223333" in proc.stderr
    assert ("UserId", "111122223333") in launch(kiln, "us-east-1", image)


def test_a_sharing_call_denied_names_the_permission(kiln: Kiln, tmp_path: Path) -> None:
    # moto's IAM authentication, on after the first 11 requests: the sandbox's start (5) and
    # this setup (6). Packer runs as a user who may do anything (its own ModifyImageAttribute
    # sets the description); kiln as one who may do anything but ec2:ModifyImageAttribute.
    endpoint = kiln.doit("sandbox", env={"INITIAL_NO_AUTH_ACTION_COUNT": "11"}).stdout.strip()
    iam = sandbox_client("iam", endpoint, "us-east-1")
    keys = {}
    anything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    no_sharing = {"Effect": "Deny", "Action": "ec2:ModifyImageAttribute", "Resource": "*"}
    for user, statements in (("packer", [anything]), ("kiln", [anything, no_sharing])):
        iam.create_user(UserName=user)
        policy = {"Version": "2012-10-17", "Statement": statements}
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    packer = keys["packer"]
    env = wrapper(
        tmp_path, f"export AWS_ACCESS_KEY_ID={packer['AccessKeyId']} AWS_SECRET_ACCESS_KEY={packer['SecretAccessKey']}"
    )
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": keys["kiln"]["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": keys["kiln"]["SecretAccessKey"],
        }
    )
    kiln.edit(CUSTOMER, distribution(["111122223333"]))
    # eu-west-1: no package file, so Packer uses the default VPC, as moto has it.
    proc = kiln.doit("base-vmi", "region=eu-west-1", code=3, env=env)
    line = failure_line(proc.stderr, "AWS permissions")
    assert "ModifyImageAttribute" in line and "denied" in line and "grant ec2:ModifyImageAttribute" in line
    # The image itself was built and recorded (sharing comes after the commit point); nothing
    # is recorded as shared, so the next run, allowed, shares it.
    assert kiln.builds() == 1 and not kiln.rows("SELECT * FROM shares")
    allowed = {**env, "AWS_ACCESS_KEY_ID": packer["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": packer["SecretAccessKey"]}
    again = kiln.doit("base-vmi", "region=eu-west-1", env=allowed)
    assert "shared with accounts 111122223333" in again.stderr and kiln.builds() == 1
