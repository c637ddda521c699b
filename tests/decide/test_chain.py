"""The image chain in the sandbox: real doit, real Packer, real moto on loopback."""

from __future__ import annotations

from conftest import Kiln, git_status

SANDBOX = ("provider=sandbox", "region=us-east-1")
CHAIN = ("base-vmi", "server-base", "core", "pipeline")


def test_chain_builds_tags_and_rebuilds_nothing(kiln: Kiln) -> None:
    first = kiln.doit("core", "pipeline", *SANDBOX)
    assert kiln.builds() == 4
    assert "4 built" in first.stderr
    images = {role: kiln.current(role) for role in CHAIN}
    described = kiln.ec2().describe_images(ImageIds=list(images.values()))["Images"]
    by_id = {i["ImageId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])} for i in described}
    fingerprints = set()
    for role, image_id in images.items():
        tags = by_id[image_id]
        for key in ("distro-id", "role-id", "customer", "fingerprint", "parent-image", "built-by"):
            assert key in tags, f"{role} lacks tag {key}"
        assert tags["built-by"] == "kiln"
        assert tags["distro-id"] == "debian-12"
        assert tags["customer"] == "paxata"
        fingerprints.add(tags["fingerprint"])
        row = kiln.rows("SELECT * FROM images WHERE image_id=?", (image_id,))[0]
        assert row["fingerprint"] == tags["fingerprint"]
        assert row["packer_version"] and row["git_commit"] and row["manifest"]
    assert by_id[images["base-vmi"]]["role-id"] == "root-server"
    # The root starts from the newest vendor release matching the distro's filter.
    vendor = kiln.ec2().describe_images(Owners=["136693071363"])["Images"]
    newest = max(vendor, key=lambda i: i["CreationDate"])
    assert len(vendor) == 2
    assert by_id[images["base-vmi"]]["parent-image"] == newest["ImageId"]
    assert by_id[images["server-base"]]["role-id"] == "base-server"
    assert by_id[images["server-base"]]["parent-image"] == images["base-vmi"]
    assert by_id[images["core"]]["parent-image"] == images["server-base"]
    assert len(fingerprints) == 4
    # Each image's name is unique and carries its short fingerprint.
    names = [i["Name"] for i in described]
    assert len(set(names)) == 4

    second = kiln.doit("core", "pipeline", *SANDBOX)
    assert kiln.builds() == 4, second.stderr
    assert "4 up to date" in second.stderr

    export = kiln.state / "exports/sandbox/paxata/debian-12/us-east-1.vmi.properties"
    lines = dict(line.split("=", 1) for line in export.read_text().splitlines() if not line.startswith("#"))
    assert lines == images
    assert git_status(kiln.root) == "", "a sandbox run changed the tracked tree"
