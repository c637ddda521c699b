"""`doit sync [region=]`: rebuild the results database from the cloud's tags (the cloud is the
truth). Images it did not know are recorded, ones that vanished are marked gone, revocations are
taken over. Manifests are not in the cloud: a synced image's manifest is unknown to `why`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.records.results import ImageRow

if TYPE_CHECKING:
    from tasks.fleet.context import Context


def sync_command(run: Context, regions: list[str]) -> str:
    o = run.options
    provider = run.provider
    account = provider.account()
    lines = []
    for region in regions:
        images = provider.our_images(region)
        run.results.confirmed(o.provider, account, region)
        known = {
            r["image_id"]: r
            for r in run.results.read(
                "SELECT * FROM images WHERE provider=? AND account=? AND region=?", (o.provider, account, region)
            )
        }
        new = revoked = 0
        for image in images:
            tags = image.tags
            if not image.fingerprint or not tags.get("kiln-role") or tags.get("customer") != o.customer:
                continue  # not committed (no fingerprint tag) or another customer's
            state = "revoked" if tags.get("revoked") is not None else "available"
            old = known.get(image.image_id)
            if old is not None and old["state"] == state and old["fingerprint"] == image.fingerprint:
                continue
            revoked += state == "revoked"
            new += old is None
            run.results.record_image(
                ImageRow(
                    provider=o.provider,
                    account=account,
                    region=region,
                    customer=o.customer,
                    distro=tags.get("distro-id", "?"),
                    role=tags["kiln-role"],
                    fingerprint=image.fingerprint,
                    image_id=image.image_id,
                    image_name=image.name,
                    parent_image=tags.get("parent-image"),
                    source_image=tags.get("copied-from", "").split("/")[-1] or tags.get("parent-image"),
                    origin=str(old["origin"]) if old is not None else "synced",
                    manifest={},
                    created_at=image.created[:19] + "Z" if image.created else "",
                    state=state,
                    revoked_reason=tags.get("revoked"),
                )
            )
        in_cloud = {i.image_id for i in images}
        gone = sorted(i for i, r in known.items() if r["state"] == "available" and i not in in_cloud)
        run.results.mark_gone(o.provider, account, region, gone)
        lines.append(
            f"{region}: {len(in_cloud)} kiln images in the cloud; {new} recorded anew, {len(gone)} marked gone,"
            f" {revoked} revoked"
        )
    return "\n".join(lines) + "\n"
