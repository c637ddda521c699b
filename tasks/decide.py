"""Current, adopted, copied or built: the decision for one image, from its fingerprint, the
cloud's index and the records. Nothing here starts a build; tasks/build acts on the answer."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from tasks.catalog.distribution import Distribution, placed
from tasks.catalog.load import Catalog
from tasks.errors import KilnError
from tasks.models import ImageKey
from tasks.providers.base import CloudImage
from tasks.records.recorder import Recorder
from tasks.records.results import Results

Fingerprints = Callable[[ImageKey], tuple[str, dict[str, Any]]]


class CloudIndex:
    """The cloud's usable images by fingerprint per region: one lookup per region per run (the
    provider caches it), and the first of each region recorded as a confirmation."""

    def __init__(self, provider: Any, results: Results, provider_name: str) -> None:
        self.provider = provider
        self.results = results
        self.provider_name = provider_name
        self._confirmed: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, region: str) -> dict[str, list[CloudImage]]:
        found: dict[str, list[CloudImage]] = self.provider.images_by_fingerprint(region)
        with self._lock:
            first = region not in self._confirmed
            self._confirmed.add(region)
        if first:
            self.results.confirmed(self.provider_name, self.provider.account(), region)
        return found

    def again(self, region: str) -> dict[str, list[CloudImage]]:
        """Look again (one call): another run may have made an image meanwhile."""
        self.provider.forget(region)
        return self(region)


class Decider:
    def __init__(
        self,
        index: CloudIndex,
        recorder: Recorder,
        distribution: Distribution,
        say: Callable[[str], None],
        counts: Counter[str],
    ) -> None:
        self.index = index
        self.recorder = recorder
        self.distribution = distribution
        self.say = say
        self.counts = counts

    def known(self, region: str, fp: str) -> set[str]:
        provider = self.index.provider
        rows = self.recorder.results.images_for(self.index.provider_name, provider.account(), region, fp)
        return {r["image_id"] for r in rows}

    def is_current(self, key: ImageKey, fp: str, manifest: dict[str, Any], forced: bool) -> bool:
        """Up to date: an image of this fingerprint is here and this region's (adopted into the
        records if another run or machine built it)."""
        if forced:
            return False
        provider = self.index.provider
        # Encrypted with another KMS key than the region's: not this region's image (re-copied).
        cloud = [i for i in self.index(key.region).get(fp, []) if placed(self.distribution, key.region, i.tags)]
        known = self.known(key.region, fp)
        existing = {i.image_id for i in provider.our_images(key.region)}
        # An image the database knows but the cloud lost (deregistered behind kiln's back).
        self.recorder.results.mark_gone(
            self.index.provider_name, provider.account(), key.region, sorted(known - existing)
        )
        if not cloud:
            return False
        image = cloud[0]
        if image.image_id in self.recorder.made:
            return True  # made by this run's task of another region (region fill): counted there
        if image.image_id not in known:
            self.adopt(key, image, fp, manifest)
            self.counts["adopted"] += 1
            self.say(f"{key.label}: adopted {image.image_id} (same fingerprint, built elsewhere)")
        else:
            self.counts["up to date"] += 1
        return True

    def adopt(self, key: ImageKey, image: CloudImage, fp: str, manifest: dict[str, Any]) -> None:
        self.recorder.record(key, image, fp, manifest, origin="adopted")
        self.recorder.size(key, image)

    def built_meanwhile(self, key: ImageKey, fp: str, manifest: dict[str, Any], who: str) -> CloudImage | None:
        """Look again: the run we waited for may have made the image."""
        found = self.index.again(key.region).get(fp)
        if not found:
            return None
        image = found[0]
        if image.image_id not in self.known(key.region, fp):
            self.adopt(key, image, fp, manifest)
        self.counts["built by another run"] += 1
        self.say(f"{key.label}: {image.image_id} was built meanwhile by {who}")
        return image

    def placed_here(self, key: ImageKey, image: CloudImage) -> bool:
        return bool(placed(self.distribution, key.region, image.tags))

    def copy_source(self, key: ImageKey, fp: str, regions: tuple[str, ...]) -> CloudImage | None:
        """An image of this fingerprint to copy from: here (one encrypted with another key than the
        region's, re-copied in place) or in another region of this account; None if there is none."""
        provider = self.index.provider
        # Regions the database knows first, then this run's other regions (looked up already).
        found_in = self.recorder.results.copy_regions(self.index.provider_name, provider.account(), fp, key.region)
        found_in += [r for r in regions if r != key.region and r not in found_in]
        # Here first: an image here encrypted with another key than the region's is re-copied in place.
        found_in.insert(0, key.region)
        return next((found[0] for r in found_in if (found := self.index(r).get(fp))), None)


def source_image(key: ImageKey, catalog: Catalog, provider: Any, index: CloudIndex, fingerprints: Fingerprints) -> str:
    """What the image is built from: the vendor's image for a root, else the parent's image here."""
    role = catalog.roles[key.role]
    if role.parent is None:
        return str(provider.vendor_image(key.region, key.distro).image_id)
    parent = ImageKey(role.parent, key.distro, key.region)
    found = index(key.region).get(fingerprints(parent)[0])
    if not found:
        raise KilnError(f"{key.label}: parent {parent.label} has no image; build it first (doit {role.parent})")
    return found[0].image_id
