"""What a killed build leaves in the cloud, and who removes it: `doit prune` lists an image that
never got its fingerprint tag (kiln SIGKILLed between Packer's image and kiln's tag) and
deregisters it under apply=1; `doit cleanup` finds kiln's build instances, Packer's temporary
key pairs and security groups and such images across the regions, and removes them under
apply=1, but never what a live build holds."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

from conftest import Kiln, cloud_leftovers, held_packer, kill_kiln_when, sandbox_client, untagged

SANDBOX = ("provider=sandbox", "region=us-east-1")
SHORT = "0123456789ab"  # a fingerprint's first 12 characters, as in kiln's image names
NAME = f"core-debian-12-{SHORT}-20260101000000000"


def test_an_image_killed_before_its_fingerprint_tag_is_pruned_and_rebuilt(kiln: Kiln, tmp_path: Path) -> None:
    kiln.doit("sandbox")
    ec2 = kiln.ec2()
    mark = tmp_path / "packer.pid"
    kill_kiln_when(kiln, held_packer(tmp_path, mark, before=False), mark, "base-vmi", *SANDBOX)
    # The kill point: Packer made and tagged its image (kiln's tags but the fingerprint) and
    # cleaned up after itself; kiln died before its commit point.
    assert cloud_leftovers(ec2) == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 1}
    orphan = untagged(ec2)[0]
    snapshots = [m["Ebs"]["SnapshotId"] for m in orphan["BlockDeviceMappings"] if "Ebs" in m]
    assert kiln.rows("SELECT * FROM images") == []

    listing = kiln.doit("prune", *SANDBOX).stdout
    line = next(ln for ln in listing.splitlines() if orphan["ImageId"] in ln)
    assert "orphan (no fingerprint)" in line and "would be deregistered" in line
    assert "GB in 1 snapshot(s)" in line and "never adopted" in line
    assert re.search(r"ami-\w+ +\d+[smhd]  would", line), f"no age in {line!r}"
    assert "1 image(s) would be deregistered" in listing
    assert len(untagged(ec2)) == 1, "a dry run changes nothing"

    applied = kiln.doit("prune", *SANDBOX, "apply=1").stdout
    assert f"{orphan['ImageId']}" in applied and "deregistered (" in applied
    assert cloud_leftovers(ec2)["untagged"] == 0
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not set(snapshots) & remaining, "the orphan's snapshots must go too"

    again = kiln.doit("base-vmi", *SANDBOX)
    assert "at once: it ran on this host and its process is gone" in again.stderr
    assert cloud_leftovers(ec2) == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 0}
    assert len(kiln.rows("SELECT * FROM images WHERE role='base-vmi'")) == 1


def test_an_image_killed_before_its_fingerprint_tag_is_removed_by_the_next_run(kiln: Kiln, tmp_path: Path) -> None:
    kiln.doit("sandbox")
    ec2 = kiln.ec2()
    mark = tmp_path / "packer.pid"
    kill_kiln_when(kiln, held_packer(tmp_path, mark, before=False), mark, "base-vmi", *SANDBOX)
    before = cloud_leftovers(ec2)
    assert before == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 1}
    orphan = untagged(ec2)[0]["ImageId"]
    again = kiln.doit("base-vmi", *SANDBOX)
    line = next(ln for ln in again.stderr.splitlines() if "was killed before it finished" in ln)
    assert f"removed image {orphan} without its fingerprint tag" in line and line.endswith("marked it crashed")
    assert cloud_leftovers(ec2) == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 0}
    assert [r["status"] for r in kiln.rows("SELECT status FROM builds ORDER BY id")] == ["crashed", "ok"]
    assert len(kiln.rows("SELECT * FROM images WHERE role='base-vmi'")) == 1
    # The killed build's row was written before Packer ran, with who ran it: the line names them.
    killed = kiln.rows("SELECT host, pid FROM builds ORDER BY id")[0]
    assert killed["host"] and f"by pid {killed['pid']} on {killed['host']}" in line


EARLY_PACKER = """#!{python}
# Stands in for Packer's first steps only: it makes the temporary key pair and security group
# in the sandbox and says so exactly as Packer 1.6.6 does, then waits to be killed.
import os, re, sys, time
import boto3
if sys.argv[1] != "build":
    os.execv("/usr/bin/packer", ["/usr/bin/packer", *sys.argv[1:]])
text = open(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("-var-file="))).read()
endpoint = re.search(r'ec2_endpoint *= *"([^"]*)"', text).group(1)
region = re.search(r'region *= *"([^"]*)"', text).group(1)
ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
ec2.create_key_pair(KeyName="packer_0a1b2c3d-early-key")
print(f"{{int(time.time())}},,ui,say,==> amazon-ebs.image: Creating temporary keypair: packer_0a1b2c3d-early-key", flush=True)
group = "packer_0a1b2c3d-early-group"
print(f"{{int(time.time())}},,ui,say,==> amazon-ebs.image: Creating temporary security group for this instance: {{group}}", flush=True)
ec2.create_security_group(GroupName=group, Description="Temporary group for Packer")
open("{mark}", "w").write(str(os.getpid()))
time.sleep(300)
"""


def test_what_packer_made_before_the_instance_is_removed_by_the_next_run(kiln: Kiln, tmp_path: Path) -> None:
    """The trail: Packer's key pair and group exist before any instance names them."""
    kiln.doit("sandbox")
    ec2 = kiln.ec2()
    mark = tmp_path / "packer.pid"
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir()
    fake.write_text(EARLY_PACKER.format(python=sys.executable, mark=mark))
    fake.chmod(0o755)
    kill_kiln_when(kiln, {"PATH": f"{fake.parent}:/usr/bin:/bin"}, mark, "base-vmi", *SANDBOX)
    before = cloud_leftovers(ec2)
    assert before == {"instances": 0, "key pairs": 1, "groups": 1, "untagged": 0}
    again = kiln.doit("base-vmi", *SANDBOX)
    line = next(ln for ln in again.stderr.splitlines() if "was killed before it finished" in ln)
    assert "key pair packer_0a1b2c3d-early-key" in line and "(packer_0a1b2c3d-early-group)" in line, line
    assert cloud_leftovers(ec2) == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 0}
    assert len(kiln.rows("SELECT * FROM images WHERE role='base-vmi'")) == 1


def strays(kiln: Kiln) -> dict[str, str]:
    """What a build killed on another machine leaves: its instance (with Packer's run_tags),
    Packer's temporary key pair and security group, and an image without its fingerprint tag.
    Beside them, things that are not kiln's."""
    kiln.doit("sandbox")
    ec2 = kiln.ec2()
    vendor = ec2.describe_images(Filters=[{"Name": "name", "Values": ["debian-12-*"]}])["Images"][0]["ImageId"]
    temp, temp_group = f"packer_{uuid.uuid4().hex[:24]}", f"packer_{uuid.uuid4().hex[:24]}"
    ec2.create_key_pair(KeyName=temp)
    group = ec2.create_security_group(GroupName=temp_group, Description="Temporary group for Packer")["GroupId"]
    instance = ec2.run_instances(
        ImageId=vendor,
        MinCount=1,
        MaxCount=1,
        KeyName=temp,
        SecurityGroupIds=[group],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"kiln build {NAME}"}]}],
    )["Instances"][0]["InstanceId"]
    tags = [
        {"Key": "Name", "Value": NAME},
        {"Key": "built-by", "Value": "kiln"},
        {"Key": "customer", "Value": "paxata"},
    ]
    image = ec2.create_image(
        InstanceId=instance, Name=NAME, TagSpecifications=[{"ResourceType": "image", "Tags": tags}]
    )["ImageId"]
    ec2.create_key_pair(KeyName="ops")
    ec2.create_security_group(GroupName="web", Description="not kiln's")
    ec2.run_instances(
        ImageId=vendor,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}],
    )
    return {"instance": instance, "key": temp, "group": group, "group name": temp_group, "image": image}


def test_cleanup_lists_then_removes_what_a_killed_build_left(kiln: Kiln) -> None:
    made = strays(kiln)
    ec2 = kiln.ec2()
    before = cloud_leftovers(ec2)
    assert before == {"instances": 1, "key pairs": 1, "groups": 1, "untagged": 1}

    listing = kiln.doit("cleanup", *SANDBOX).stdout
    lines = listing.splitlines()
    for thing in (made["instance"], made["key"], made["group"], made["image"]):
        assert sum(thing in ln and "would be" in ln for ln in lines) == 1, f"{thing} not listed once:\n{listing}"
    assert "instance" in listing and "would be terminated" in listing
    assert lines[-1].startswith("cleanup: 1 instance(s), 1 key pair(s), 1 security group(s), 1 image(s)")
    assert "would be removed; run again with apply=1" in lines[-1]
    assert cloud_leftovers(ec2) == before, "a dry run changes nothing"

    applied = kiln.doit("cleanup", *SANDBOX, "apply=1").stdout
    assert f"instance {made['instance']}" in applied and "terminated:" in applied
    assert f"security group {made['group']} ({made['group name']})  deleted" in applied
    assert f"key pair {made['key']}  deleted" in applied
    assert f"{made['image']}" in applied and "deregistered (" in applied
    assert cloud_leftovers(ec2) == {"instances": 0, "key pairs": 0, "groups": 0, "untagged": 0}
    # What is not kiln's stays.
    assert "ops" in {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert "web" in {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    web = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web"]}])["Reservations"]
    assert web[0]["Instances"][0]["State"]["Name"] == "running"

    nothing = kiln.doit("cleanup", *SANDBOX).stdout
    assert nothing.strip().splitlines()[-1].startswith("cleanup: 0 instance(s), 0 key pair(s), 0 security group(s)")


def test_cleanup_leaves_a_live_build_alone(kiln: Kiln) -> None:
    made = strays(kiln)
    holder = f"{socket.gethostname()} pid {os.getpid()} (cafe0003)"  # this test: a live holder
    sandbox_client("dynamodb", kiln.endpoint(), "us-east-1").create_table(
        TableName="kiln-build-leases",
        KeySchema=[{"AttributeName": "lease", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lease", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sandbox_client("dynamodb", kiln.endpoint(), "us-east-1").put_item(
        TableName="kiln-build-leases",
        Item={
            "lease": {"S": f"us-east-1/{SHORT}{'f' * 52}"},
            "holder": {"S": holder},
            "expires": {"N": str(int(time.time()) + 600)},
        },
    )
    before = cloud_leftovers(kiln.ec2())
    out = kiln.doit("cleanup", *SANDBOX, "apply=1").stdout
    assert f"instance {made['instance']}" in out and f"kept: its build is live (lease of {holder})" in out
    assert f"security group {made['group']} ({made['group name']})  kept" in out
    assert f"key pair {made['key']}  kept" in out
    assert "held back: its build is live" in out
    assert cloud_leftovers(kiln.ec2()) == before


def test_cleanup_mistakes_are_one_line(kiln: Kiln) -> None:
    for args, says in (
        (("apply=yes",), "variable apply: 'yes' is not valid"),
        (("provider=local",), "variable provider: doit cleanup works with aws and sandbox"),
    ):
        proc = kiln.doit("cleanup", *args, code=3)
        assert says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr
