"""Filling a region by copy: the chain in a second region costs copies, not Packer builds."""

from __future__ import annotations

from conftest import Kiln

CHAIN = ("base-vmi", "server-base", "core", "pipeline")


def tags_of(kiln: Kiln, region: str, image_id: str) -> dict[str, str]:
    image = kiln.ec2(region).describe_images(ImageIds=[image_id])["Images"][0]
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


def test_chain_into_a_new_region_is_copied_with_every_tag(kiln: Kiln) -> None:
    kiln.doit("core", "pipeline", "provider=sandbox", "region=us-east-1")
    assert kiln.builds() == 4
    proc = kiln.doit("core", "pipeline", "provider=sandbox", "region=eu-west-1")
    assert kiln.builds() == 4, "a copy must not run Packer"
    assert "4 copied" in proc.stderr
    for role in CHAIN:
        source, copy = kiln.current(role), kiln.current(role, "eu-west-1")
        row = kiln.rows("SELECT * FROM images WHERE image_id=?", (copy,))[0]
        assert (row["origin"], row["source_image"]) == ("copied", source)
        src_tags, copy_tags = tags_of(kiln, "us-east-1", source), tags_of(kiln, "eu-west-1", copy)
        assert copy_tags["copied-from"] == f"us-east-1/{source}"
        for key, value in src_tags.items():
            if key != "parent-image":
                assert copy_tags[key] == value, f"{role}: tag {key} not carried"
    # A copy's parent is the parent's copy in its own region.
    assert tags_of(kiln, "eu-west-1", kiln.current("core", "eu-west-1"))["parent-image"] == kiln.current(
        "server-base", "eu-west-1"
    )
    again = kiln.doit("core", "pipeline", "provider=sandbox", "region=eu-west-1")
    assert "4 up to date" in again.stderr


def test_copy_0_builds_instead(kiln: Kiln) -> None:
    kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    kiln.doit("base-vmi", "provider=sandbox", "region=us-west-2", "copy=0")
    assert kiln.builds() == 2
    assert kiln.rows("SELECT origin FROM images WHERE region='us-west-2'")[0]["origin"] == "built"
