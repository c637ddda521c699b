"""Images that lost their commit point: made by Packer with kiln's tags (`built-by = kiln`,
`Name`) but never given their `fingerprint` tag, because kiln was killed between the two. No
lookup by fingerprint ever finds them, so they would cost snapshot storage forever; they are
never adopted. `doit prune` and `doit cleanup` list them with their age and snapshot size and
deregister them, with their snapshots, under apply=1. An image whose build is still live (its
lease) is left alone: it is between Packer's last step and kiln's tag right now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.errors import KilnError
from tasks.fleet.inventory import age
from tasks.fleet.live_builds import LiveBuilds
from tasks.providers.base import CloudImage

if TYPE_CHECKING:
    from tasks.fleet.context import Context


def orphan_images(run: Context, region: str) -> list[CloudImage]:
    """This customer's kiln images in the region without a fingerprint tag, oldest first."""
    listing = run.provider.our_images(region)  # the run's one lookup of kiln's images
    customer = run.options.customer
    found = [
        i
        for i in listing
        if not i.fingerprint
        and i.tags.get("built-by") == "kiln"
        and i.tags.get("Name")
        and i.tags.get("customer", customer) == customer
    ]
    return sorted(found, key=lambda i: (i.created, i.image_id))


def size(image: CloudImage) -> str:
    gb = f"{image.volume_gb} GB" if image.volume_gb else "? GB"
    return f"{gb} in {len(image.snapshot_ids)} snapshot(s)"


def orphan_lines(run: Context, region: str, apply: bool, live: LiveBuilds | None = None) -> tuple[list[str], int]:
    """One line per orphan image (and what was done); how many were (or would be) deregistered."""
    lines: list[str] = []
    removed = 0
    live = live or LiveBuilds(run)
    for image in orphan_images(run, region):
        head = f"{region}  {'orphan (no fingerprint)':<28} {image.image_id:<22} {age(image.created):>5}"
        what = f"{image.tags.get('Name')}, {size(image)}"
        holder = live.of(region, image.name or image.tags.get("Name", ""))
        if holder:
            lines.append(f"{head}  held back: its build is live (lease of {holder}); {what}")
            continue
        why = "kiln's tags but no fingerprint tag (a build killed before its commit point); never adopted"
        removed += 1
        if not apply:
            lines.append(f"{head}  would be deregistered ({what}): {why}")
            continue
        try:
            run.provider.deregister(region, image.image_id)
        except KilnError as err:
            removed -= 1
            lines.append(
                f"{head}  left ({what}): {err}; remove it by hand: aws ec2 deregister-image --region {region}"
                f" --image-id {image.image_id}, then aws ec2 delete-snapshot for {', '.join(image.snapshot_ids) or 'its snapshots'}"
            )
            continue
        lines.append(f"{head}  deregistered ({what}): {why}")
    return lines, removed
