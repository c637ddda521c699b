"""Fill a region by copying an image of the same fingerprint from another region.

CopyImage carries no tags: kiln waits until the copy is available, then tags it (and its
snapshots) with the source's tags in one call, the fingerprint included: that call is the
commit point, as after a build. A copy interrupted or failed before then is deregistered, so
nothing untagged is left to cost money.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tasks.catalog.distribution import KMS_TAG, Distribution
from tasks.errors import KilnError
from tasks.models import ImageKey
from tasks.providers.base import CloudImage


def copy_image(
    key: ImageKey,
    source: CloudImage,
    fp: str,
    *,
    provider: Any,
    dist: Distribution,
    parent_image: Callable[[ImageKey], str | None],
    say: Callable[[str], None],
) -> CloudImage:
    """parent_image: what the copy is built on in its region (tagged as parent-image)."""
    # Encrypted copies take the target region's key; a copy into the source's own region is
    # how an image encrypted with another key is re-encrypted (no rebuild).
    kms = dist.kms_key(key.region) if dist.encrypt else None
    how = f", encrypted with {dist.key_label(key.region)}" if dist.encrypt else ""
    say(f"{key.label}: copying {source.image_id} from {source.region} (same fingerprint{how})")
    image_id = provider.copy_image(source, key.region, kms, _name(provider, key, source, fp))
    try:
        copied = provider.wait_available(key.region, image_id)
        tags = {**source.tags, "copied-from": f"{source.region}/{source.image_id}", "fingerprint": fp}
        tags.pop(KMS_TAG, None)  # the source's key is not the copy's
        if dist.encrypt:
            tags[KMS_TAG] = dist.key_label(key.region)
        parent = parent_image(key)
        if parent is not None:
            tags["parent-image"] = parent
        provider.tag_image(key.region, copied, tags)
    except BaseException as err:
        try:
            provider.deregister(key.region, image_id)
            left = f"the unfinished copy {image_id} was deregistered"
        except KilnError as again:
            left = f"the unfinished copy {image_id} could not be deregistered ({again}): deregister it by hand"
        if isinstance(err, KilnError):
            raise KilnError(f"{err}; {left}") from None
        say(f"{key.label}: {left}")
        raise
    image: CloudImage = replace(copied, tags=tags)
    provider.remember(key.region, image)
    return image


def _name(provider: Any, key: ImageKey, source: CloudImage, fp: str) -> str:
    """The source's name, unless the region holds it already (a re-copy with another key):
    names are unique per account and region."""
    here = provider.our_images(key.region)
    if not any(i.name == source.name or i.fingerprint == fp for i in here):
        return source.name
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")[:-3]
    return f"{source.name[:100]}-copy-{stamp}"
