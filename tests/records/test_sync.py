"""`doit sync`: the cloud is the truth; a lost database is rebuilt from the images' tags."""

from __future__ import annotations

from conftest import Kiln

SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_sync_restores_a_deleted_database(kiln: Kiln) -> None:
    kiln.doit("core", "pipeline", *SANDBOX)
    before = {r["image_id"]: r["role"] for r in kiln.rows("SELECT image_id, role FROM images")}
    for f in kiln.state.glob("results.sqlite*"):
        f.unlink()
    proc = kiln.doit("sync", *SANDBOX)
    assert "4 recorded anew" in proc.stdout
    after = {r["image_id"]: r["role"] for r in kiln.rows("SELECT image_id, role FROM images WHERE state='available'")}
    assert after == before
    assert all("up to date" in line for line in kiln.doit("images", *SANDBOX).stdout.splitlines()[1:])
    kiln.doit("core", "pipeline", *SANDBOX)
    assert kiln.builds() == 0, "a synced database builds nothing that exists"

    # Deregistered behind kiln's back: sync marks it gone.
    core = kiln.current("core")
    kiln.ec2().deregister_image(ImageId=core)
    assert "1 marked gone" in kiln.doit("sync", *SANDBOX).stdout
    assert kiln.rows("SELECT state FROM images WHERE image_id=?", (core,))[0]["state"] == "gone"
