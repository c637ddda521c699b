"""Fill a region by copying an image of the same fingerprint from another region.

CopyImage carries no tags: kiln waits until the copy is available, then tags it (and its
snapshots) with the source's tags in one call, the fingerprint included: that call is the
commit point, as after a build. A copy interrupted or failed before then is deregistered, so
nothing untagged is left to cost money.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import KilnError
from .providers.base import CloudImage

if TYPE_CHECKING:
    from .engine import ImageKey, Run


def copy_image(run: Run, key: ImageKey, source: CloudImage, fp: str) -> CloudImage:
    provider = run.provider
    run.say(f"{key.label}: copying {source.image_id} from {source.region} (same fingerprint)")
    image_id = provider.copy_image(source, key.region)
    try:
        copied = provider.wait_available(key.region, image_id)
        tags = {**source.tags, "copied-from": f"{source.region}/{source.image_id}", "fingerprint": fp}
        role = run.catalog.roles[key.role]
        if role.parent is None:
            # The vendor's release has its own id in every region.
            tags["parent-image"] = provider.vendor_image(key.region, key.distro).image_id
        else:
            # The parent here is the parent's copy in this region, not the source region's image.
            from .engine import ImageKey

            parent = ImageKey(role.parent, key.distro, key.region)
            local = run.cloud_images(key.region).get(run.fingerprint(parent)[0])
            if local:
                tags["parent-image"] = local[0].image_id
        provider.tag_image(key.region, copied, tags)
    except BaseException as err:
        try:
            provider.deregister(key.region, image_id)
            left = f"the unfinished copy {image_id} was deregistered"
        except KilnError as again:
            left = f"the unfinished copy {image_id} could not be deregistered ({again}): deregister it by hand"
        if isinstance(err, KilnError):
            raise KilnError(f"{err}; {left}") from None
        run.say(f"{key.label}: {left}")
        raise
    image = CloudImage(image_id, copied.name, key.region, copied.created, tags, copied.snapshot_ids, copied.volume_gb)
    provider.remember(key.region, image)
    return image
