"""`doit revoke`: a revoked image is never used again, in any region; what was built on it is stale."""

from __future__ import annotations

import json

from conftest import Kiln, failure_line

SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_revoke_forces_a_rebuild_and_marks_descendants_stale(kiln: Kiln) -> None:
    kiln.doit("core", "pipeline", *SANDBOX)
    kiln.doit("core", "provider=sandbox", "region=eu-west-1")  # copies
    bad = kiln.current("server-base")
    proc = kiln.doit("revoke", f"image={bad}", "reason=CVE-2026-0001 in openssl", *SANDBOX)
    assert f"revoked {bad}" in proc.stdout
    assert "revoked its copy" in proc.stdout, "the copy in eu-west-1 holds the same bits"
    tags = {t["Key"]: t["Value"] for t in kiln.ec2().describe_images(ImageIds=[bad])["Images"][0]["Tags"]}
    assert tags["revoked"] == "CVE-2026-0001 in openssl"
    assert kiln.rows("SELECT state, revoked_reason FROM images WHERE image_id=?", (bad,))[0]["state"] == "revoked"
    status = {i["role"]: i["status"] for i in json.loads(kiln.doit("images", *SANDBOX, "format=json").stdout)["images"]}
    assert status == {
        "base-vmi": "up to date",
        "server-base": "revoked",
        "core": "parent revoked",
        "pipeline": "parent revoked",
    }
    assert "which is revoked" in kiln.doit("why", "core", *SANDBOX).stdout
    builds = kiln.builds()
    kiln.doit("core", "pipeline", *SANDBOX)
    assert kiln.builds() == builds + 3, "server-base, core and pipeline are rebuilt; nothing is copied back"
    assert kiln.current("server-base") != bad
    # A database that forgot everything still never adopts the revoked image.
    for f in kiln.state.glob("results.sqlite*"):
        f.unlink()
    kiln.doit("server-base", *SANDBOX)
    assert kiln.rows("SELECT count(*) FROM images WHERE image_id=?", (bad,))[0][0] == 0


def test_revoke_needs_a_known_image_and_a_reason(kiln: Kiln) -> None:
    kiln.doit("base-vmi", *SANDBOX)
    image = kiln.current("base-vmi")
    proc = kiln.doit("revoke", f"image={image}", *SANDBOX, code=3)
    assert "variable reason" in failure_line(proc.stderr, "reason")
    proc = kiln.doit("revoke", "image=ami-0000000000000000", "reason=x", *SANDBOX, code=3)
    assert "not in kiln's results database" in failure_line(proc.stderr, "ami-0000000000000000")
