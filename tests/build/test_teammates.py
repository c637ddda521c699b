"""Teammates on two machines (two checkouts, two databases, one cloud): the build lease in
DynamoDB makes each image once, and a lease whose holder died is taken over after it expires."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from conftest import Kiln, clean_env, copy_catalog, sandbox_client, slow_packer, start


def share_sandbox(first: Kiln, second: Kiln) -> None:
    """The second machine talks to the first one's cloud, as teammates share an account."""
    first.doit("sandbox")
    (second.state / "sandbox").mkdir(parents=True)
    for name in ("pid", "port"):
        shutil.copy(first.state / "sandbox" / name, second.state / "sandbox" / name)


def test_two_machines_build_each_image_once(kiln: Kiln, tmp_path: Path) -> None:
    home = tmp_path / "home-b"
    home.mkdir()
    teammate = Kiln(copy_catalog(tmp_path / "repo-b"), clean_env(home))
    share_sandbox(kiln, teammate)
    env = slow_packer(tmp_path)
    procs = [start(k, env, "core", "provider=sandbox", "region=us-east-1") for k in (kiln, teammate)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    built = sorted(r["role"] for k in (kiln, teammate) for r in k.rows("SELECT role FROM builds"))
    assert built == ["base-vmi", "core", "server-base"], "an image was built on both machines"
    # Each machine knows all three images; the ones it did not build it adopted.
    for k in (kiln, teammate):
        assert sorted(r["role"] for r in k.rows("SELECT role FROM images WHERE state='available'")) == [
            "base-vmi",
            "core",
            "server-base",
        ]
    assert {kiln.current(r) for r in ("base-vmi", "server-base", "core")} == {
        teammate.current(r) for r in ("base-vmi", "server-base", "core")
    }
    errs = outputs[0][1] + outputs[1][1]
    assert "which holds the build lease for this image" in errs
    assert "was built meanwhile by" in errs
    images = kiln.ec2().describe_images(Owners=["self"])["Images"]
    assert len(images) == 3
    # Leases are given back after each build.
    assert leases(kiln)["Items"] == []


def leases(kiln: Kiln) -> dict[str, list[dict[str, dict[str, str]]]]:
    ddb = sandbox_client("dynamodb", kiln.endpoint(), "us-east-1")
    return ddb.scan(TableName="kiln-build-leases")  # type: ignore[no-any-return]


def test_lease_of_a_dead_holder_is_taken_over_after_expiry(kiln: Kiln) -> None:
    kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1")
    fp = kiln.rows("SELECT fingerprint FROM images WHERE role='base-vmi'")[0][0]
    ddb = sandbox_client("dynamodb", kiln.endpoint(), "us-east-1")
    # A teammate's run that took the lease and then died: nobody renews it.
    expires = int(time.time()) + 4
    ddb.put_item(
        TableName="kiln-build-leases",
        Item={
            "lease": {"S": f"us-east-1/{fp}"},
            "holder": {"S": "laptop-of-ana pid 4242 (deadbeef)"},
            "expires": {"N": str(expires)},
        },
    )
    proc = kiln.doit("base-vmi", "provider=sandbox", "region=us-east-1", "force=1")
    assert "waiting for laptop-of-ana pid 4242 (deadbeef), which holds the build lease" in proc.stderr
    assert "took over the expired build lease of laptop-of-ana pid 4242" in proc.stderr
    assert time.time() >= expires, "the lease was taken before it expired"
    assert kiln.builds() == 2
    assert leases(kiln)["Items"] == []
