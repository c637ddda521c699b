"""Encryption ([distribution] encrypt, kms_keys): builds encrypt the root volume (Packer's
encrypt_boot, an encrypted CopyImage in 1.6.6), copies take the target region's key, and a key
change re-copies without rebuilding. moto ignores CopyImage's Encrypted/KmsKeyId: the sandbox's
own addition (tasks/providers/sandbox_additions.py) shows them on the copy's block device and snapshot; the
keys themselves are moto's KMS."""

from __future__ import annotations

from typing import Any

from conftest import Kiln, sandbox_client

CUSTOMER = "customers/paxata/customer.toml"


def make_key(kiln: Kiln, region: str, alias: str) -> str:
    kms = sandbox_client("kms", kiln.endpoint(), region)
    key = kms.create_key(Description=f"kiln test {alias}")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return str(key["Arn"])


def set_keys(kiln: Kiln, keys: dict[str, str]) -> None:
    inner = ", ".join(f'"{r}" = "{k}"' for r, k in keys.items())
    path = kiln.root / CUSTOMER
    text = path.read_text().split("\n[distribution]\n")[0]
    path.write_text(f"{text}\n[distribution]\nencrypt = true\nkms_keys = {{ {inner} }}\n")


def encryption(kiln: Kiln, region: str, image_id: str) -> tuple[bool, str, bool, str]:
    """(image encrypted, its key, snapshot encrypted, its key), as the cloud says."""
    ec2: Any = kiln.ec2(region)
    ebs = ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]
    snap = ec2.describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"][0]
    return ebs["Encrypted"], ebs.get("KmsKeyId", ""), snap["Encrypted"], snap.get("KmsKeyId", "")


def test_encrypted_builds_and_copies_carry_the_regions_key_and_a_new_key_recopies(kiln: Kiln) -> None:
    kiln.doit("sandbox")
    east = make_key(kiln, "us-east-1", "alias/images")
    west = make_key(kiln, "eu-west-1", "alias/images")
    west2 = make_key(kiln, "eu-west-1", "alias/images-2027")
    east2 = make_key(kiln, "us-east-1", "alias/images-2027")
    set_keys(kiln, {"us-east-1": "alias/images", "eu-west-1": "alias/images"})

    kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    built = kiln.current("base-vmi")
    assert encryption(kiln, "us-east-1", built) == (True, east, True, east)
    fingerprint = kiln.rows("SELECT fingerprint FROM images WHERE image_id=?", (built,))[0][0]

    kiln.doit("base-vmi", "provider=sandbox", "region=eu-west-1")
    copy = kiln.current("base-vmi", "eu-west-1")
    assert encryption(kiln, "eu-west-1", copy) == (True, west, True, west)
    assert kiln.builds() == 1

    # Another key in eu-west-1: the image there is no longer that region's image; it is copied
    # again with the new key, nothing is rebuilt, the fingerprint stays.
    set_keys(kiln, {"us-east-1": "alias/images", "eu-west-1": "alias/images-2027"})
    proc = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1,eu-west-1")
    assert "1 copied" in proc.stderr and "1 up to date" in proc.stderr
    recopy = kiln.current("base-vmi", "eu-west-1")
    assert recopy != copy and encryption(kiln, "eu-west-1", recopy) == (True, west2, True, west2)
    assert kiln.current("base-vmi") == built
    # In the build's own region too: copied in place with the new key.
    set_keys(kiln, {"us-east-1": "alias/images-2027", "eu-west-1": "alias/images-2027"})
    proc = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    assert "1 copied" in proc.stderr
    in_place = kiln.current("base-vmi")
    assert in_place != built and encryption(kiln, "us-east-1", in_place) == (True, east2, True, east2)
    assert kiln.builds() == 1
    rows = kiln.rows("SELECT fingerprint, origin FROM images WHERE state='available'")
    assert {r["fingerprint"] for r in rows} == {fingerprint}
    assert sorted(r["origin"] for r in rows) == ["built", "copied", "copied", "copied"]
    # The image's tag says the key it was encrypted with, as customer.toml names it.
    tags = kiln.ec2().describe_images(ImageIds=[in_place])["Images"][0]["Tags"]
    assert {"Key": "kms-key", "Value": "alias/images-2027"} in tags

    again = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1,eu-west-1")
    assert "2 up to date" in again.stderr


def test_encrypt_without_a_key_takes_the_accounts_default_and_says_what_sharing_needs(kiln: Kiln) -> None:
    kiln.edit(CUSTOMER, '\n[distribution]\nencrypt = true\naccounts = ["111122223333"]\n')
    proc = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    encrypted, key, _, _ = encryption(kiln, "us-east-1", kiln.current("base-vmi"))
    default = sandbox_client("kms", kiln.endpoint()).describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    assert encrypted and key == default
    assert "encrypted with the account's default EBS key" in proc.stderr and "aws/ebs" in proc.stderr


def test_sharing_an_encrypted_image_names_the_key_grants(kiln: Kiln) -> None:
    kiln.edit(
        CUSTOMER,
        '\n[distribution]\nencrypt = true\nkms_keys = { "us-east-1" = "alias/images" }\naccounts = ["111122223333"]\n',
    )
    kiln.doit("sandbox")
    make_key(kiln, "us-east-1", "alias/images")
    proc = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    line = next(x for x in proc.stderr.splitlines() if "key policy" in x)
    assert "alias/images" in line and "111122223333" in line and "kms:Decrypt" in line
    assert "kms:CreateGrant" in line and "kiln does not edit key policies" in line
