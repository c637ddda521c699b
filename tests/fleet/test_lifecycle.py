"""The lifecycle policy ([lifecycle] in customer.toml, role.toml overriding): `doit prune` lists
each image with its action and why, and apply=1 deprecates, disables and deregisters exactly
those; never an image that is current, exported or in use. Images of controlled ages come from
real builds, backdated through the sandbox's own addition (moto sets CreationDate to now);
DisableImage is moto's, EnableImageDeprecation the sandbox's."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import Kiln

SANDBOX = ("provider=sandbox", "region=us-east-1")
POLICY = '\n[lifecycle]\nkeep = 2\ndeprecate_after = "30d"\ndisable_after = "90d"\nderegister_after = "180d"\n'


def backdate(kiln: Kiln, image_id: str, days: int) -> None:
    created = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps({"region": "us-east-1", "image_id": image_id, "created": created}).encode()
    request = urllib.request.Request(f"{kiln.endpoint()}/kiln-sandbox/image-created", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def line_of(listing: str, image_id: str) -> str:
    lines = [line for line in listing.splitlines() if image_id in line]
    assert len(lines) == 1, listing
    return lines[0]


def described(kiln: Kiln, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {i["ImageId"]: i for i in kiln.ec2().describe_images(ImageIds=ids, IncludeDisabled=True)["Images"]}


def test_policy_over_images_of_several_ages(kiln: Kiln) -> None:
    kiln.doit("base-vmi", *SANDBOX)
    for _ in range(6):
        kiln.doit("base-vmi", *SANDBOX, "force=1")
    ids = [r["image_id"] for r in kiln.rows("SELECT image_id FROM images ORDER BY id")]
    in_use, exported, old, older_than_disable, beyond_keep, kept, current = ids
    assert kiln.current("base-vmi") == current
    for image, days in zip(ids, (500, 300, 200, 100, 60, 40, 35), strict=True):
        backdate(kiln, image, days)
    kiln.edit("customers/paxata/customer.toml", POLICY)
    ec2 = kiln.ec2()
    ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": in_use})
    # An export that still names an old image (say, a committed properties file downstream reads).
    kiln.edit(".kiln/exports/sandbox/paxata/debian-12/us-east-1.vmi.properties", f"pinned={exported}\n")
    snapshot = described(kiln, [old])[old]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]

    listing = kiln.doit("prune", *SANDBOX).stdout
    expected = {
        in_use: "held back: used by launch template web version 1",
        exported: "held back: named in an export file",
        old: "would be deregistered (image, with 1 snapshot(s)): older than deregister_after 180d",
        older_than_disable: "would be disabled: older than disable_after 90d (customers/paxata/customer.toml)",
        beyond_keep: "would be deprecated: older than deprecate_after 30d (customers/paxata/customer.toml), beyond",
        kept: "would be deprecated: older than deprecate_after 30d (customers/paxata/customer.toml); one of the"
        " newest 2: deprecation is harmless and reversible",
        current: "held back: current in the results database",
    }
    for image, action in expected.items():
        assert action in line_of(listing, image), line_of(listing, image)
    assert "1 image(s) would be deregistered, 1 disabled, 2 deprecated; run again with apply=1" in listing
    before = described(kiln, ids)
    assert len(before) == 7 and all(i["State"] == "available" and "DeprecationTime" not in i for i in before.values())

    # role.toml overrides the customer's policy, key by key.
    role = kiln.root / "packer/base-vmi/role.toml"
    shipped = role.read_text()
    role.write_text(shipped + '\n[lifecycle]\nderegister_after = "250d"\n')
    overridden = kiln.doit("prune", *SANDBOX).stdout
    assert "would be disabled: older than disable_after 90d" in line_of(overridden, old)
    role.write_text(shipped)

    applied = kiln.doit("prune", *SANDBOX, "apply=1").stdout
    assert "1 image(s) deregistered, 1 disabled, 2 deprecated" in applied
    after = described(kiln, ids)
    assert old not in after
    assert not ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot]}])["Snapshots"]
    assert after[older_than_disable]["State"] == "disabled"
    assert after[beyond_keep].get("DeprecationTime") and after[kept].get("DeprecationTime")
    for untouched in (in_use, exported, current):
        assert after[untouched]["State"] == "available" and "DeprecationTime" not in after[untouched], untouched
    states = {r["image_id"]: r["state"] for r in kiln.rows("SELECT image_id, state FROM images")}
    assert (states[old], states[older_than_disable], states[current]) == ("pruned", "disabled", "available")

    # Done is done: the next listing has nothing left to do, and says why.
    again = kiln.doit("prune", *SANDBOX).stdout
    assert "keep: disabled already" in line_of(again, older_than_disable)
    assert "deprecated already" in line_of(again, beyond_keep) and "deprecated already" in line_of(again, kept)
    assert "0 image(s) would be deregistered, 0 disabled, 0 deprecated" in again
    assert "up to date" in kiln.doit("base-vmi", *SANDBOX).stderr
