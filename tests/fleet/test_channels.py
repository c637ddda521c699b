"""Channels: promote, promote again, roll back with image=; the history keeps all three; each
region's SSM parameter (real moto) holds the channel's image; prune spares channel images; a
revoked channel image says so; every bad input is one line, exit 3."""

from __future__ import annotations

import json

from conftest import Kiln, failure_line, sandbox_client

BOTH = ("provider=sandbox", "region=us-east-1,eu-west-1")
REGIONS = ("us-east-1", "eu-west-1")
PARAM = "/kiln/paxata/debian-12/base-vmi/prod"


def ssm_value(kiln: Kiln, region: str, name: str = PARAM) -> tuple[str, str]:
    p = sandbox_client("ssm", kiln.endpoint(), region).get_parameter(Name=name)["Parameter"]
    return p["Value"], p["DataType"]


def images_of(kiln: Kiln) -> dict[str, str]:
    return {r: kiln.current("base-vmi", r) for r in REGIONS}


def test_promote_again_and_roll_back_keep_history_ssm_and_prune_spares_them(kiln: Kiln) -> None:
    kiln.doit("base-vmi", *BOTH)
    first = images_of(kiln)
    out = kiln.doit("promote", "base-vmi", "channel=prod", *BOTH).stdout
    for region in REGIONS:
        assert f"base-vmi (debian-12, {region}): prod -> {first[region]}; SSM {PARAM}" in out, out
        assert ssm_value(kiln, region) == (first[region], "aws:ec2:image")

    kiln.doit("base-vmi", *BOTH, "force=1")
    second = images_of(kiln)
    assert second != first
    out = kiln.doit("promote", "base-vmi", "channel=prod", *BOTH).stdout
    assert f"prod -> {second['us-east-1']} (was {first['us-east-1']})" in out
    assert {ssm_value(kiln, r)[0] for r in REGIONS} == set(second.values())
    # Unchanged: nothing written.
    assert "already points at" in kiln.doit("promote", "base-vmi", "channel=prod", *BOTH).stdout

    kiln.doit("base-vmi", *BOTH, "force=1")
    third = images_of(kiln)
    # Roll back by one region's image id: each region gets its own copy of those bits.
    out = kiln.doit("promote", "base-vmi", "channel=prod", f"image={first['us-east-1']}", *BOTH).stdout
    for region in REGIONS:
        assert f"prod -> {first[region]} (was {second[region]})" in out, out
        assert ssm_value(kiln, region)[0] == first[region]

    history = json.loads(kiln.doit("channels", "provider=sandbox", "role=base-vmi", "format=json").stdout)["channels"]
    east = [(h["image_id"], h["previous_image"]) for h in history if h["region"] == "us-east-1"]
    assert east == [
        (first["us-east-1"], "-"),
        (second["us-east-1"], first["us-east-1"]),
        (first["us-east-1"], second["us-east-1"]),
    ]
    assert [h["current"] for h in history if h["region"] == "us-east-1"] == [False, False, True]
    assert all("@" in h["who"] and h["at"] for h in history)
    table = kiln.doit("channels", "provider=sandbox").stdout
    assert len(table.splitlines()) == 1 + 6 and "previous_image" in table

    # doit images names the channel beside the image it points at (here: not the current one).
    shown = json.loads(kiln.doit("images", *BOTH, "format=json").stdout)["images"]
    assert {tuple(i["channels"]) for i in shown if i["role"] == "base-vmi"} == {()}
    kiln.doit("promote", "base-vmi", "channel=staging", *BOTH)
    shown = json.loads(kiln.doit("images", *BOTH, "format=json").stdout)["images"]
    assert {tuple(i["channels"]) for i in shown if i["role"] == "base-vmi"} == {("staging",)}

    # Prune: the newest stays, the channel's image and the one it pointed at last are spared.
    kiln.doit("base-vmi", *BOTH, "force=1")
    listing = kiln.doit("prune", "provider=sandbox", "region=us-east-1", "keep=1").stdout
    assert "on channel prod of base-vmi" in listing and "pointed at it last" in listing, listing
    applied = kiln.doit("prune", "provider=sandbox", "region=us-east-1", "keep=1", "apply=1").stdout
    left = {i["ImageId"] for i in kiln.ec2().describe_images(Owners=["self"])["Images"]}
    assert first["us-east-1"] in left and second["us-east-1"] in left, applied
    assert third["us-east-1"] in left, "staging points at the third"

    # Revoking the channel's image says so and leaves the channel where it is.
    out = kiln.doit("revoke", "provider=sandbox", f"image={first['us-east-1']}", "reason=CVE-1").stdout
    assert f"channel prod of base-vmi (us-east-1) still points at {first['us-east-1']}" in out, out
    assert ssm_value(kiln, "us-east-1")[0] == first["us-east-1"]
    err = kiln.doit("promote", "base-vmi", "channel=prod", f"image={first['us-east-1']}", *BOTH, code=3).stderr
    failure_line(err, "is revoked")


def test_bad_promote_inputs_are_one_line(kiln: Kiln) -> None:
    sandbox = ("provider=sandbox", "region=us-east-1")
    failure_line(kiln.doit("promote", "base-vmi", "channel=prod", *sandbox, code=3).stderr, "no image to promote")
    verify = kiln.root / "provision/ansible/verify/core.yml"
    verify.parent.mkdir(parents=True)
    verify.write_text("---\n- name: Verify\n  hosts: all\n  tasks: []\n")
    kiln.doit("core", *sandbox)
    core = kiln.current("core")
    base = kiln.current("base-vmi")
    err = kiln.doit("promote", "core", "channel=prod", *sandbox, code=3).stderr
    assert "force=1" in failure_line(err, f"variable image: {core}", "unverified")
    assert "force=1: unverified" in kiln.doit("promote", "core", "channel=prod", "force=1", *sandbox).stdout
    err = kiln.doit("promote", "core", "channel=prod", f"image={base}", *sandbox, code=3).stderr
    failure_line(err, f"variable image: {base} is an image of role base-vmi, not core")
    failure_line(kiln.doit("promote", "core", "channel=Prod!", *sandbox, code=3).stderr, "variable channel")
    failure_line(kiln.doit("promote", "core", *sandbox, code=3).stderr, "variable channel", "channel=prod")
    failure_line(kiln.doit("promote", "nosuch", "channel=prod", *sandbox, code=3).stderr, "'nosuch' is not a role")
    err = kiln.doit("promote", "core", "channel=prod", "image=ami-12345678", *sandbox, code=3).stderr
    failure_line(err, "variable image: ami-12345678 is not a sandbox image")
    failure_line(kiln.doit("channels", "provider=sandbox", "role=nosuch", code=3).stderr, "variable role")
