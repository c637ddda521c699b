"""What a run writes down for an image it found, adopted, copied or built: the image row (with
its build finished in the same transaction), its size, and the exports read from the rows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tasks.models import ImageKey
from tasks.providers.base import CloudImage
from tasks.records.exports import Exports
from tasks.records.results import ImageRow, Results


class Recorder:
    def __init__(
        self,
        results: Results,
        exports: Exports,
        account: Callable[[], str],
        *,
        packer_version: Callable[[], str | None],
        git_commit: Callable[[], str | None],
    ) -> None:
        self.results = results
        self.exports = exports
        self._account = account
        self._packer_version = packer_version
        self._git_commit = git_commit
        self._lock = threading.Lock()
        # What this run made: never "up to date" to itself (region fill counts it where made).
        self.made: set[str] = set()

    def record(
        self,
        key: ImageKey,
        image: CloudImage,
        fp: str,
        manifest: dict[str, Any],
        origin: str,
        *,
        build_id: int | None = None,
        source: str | None = None,
        verified: str | None = None,
    ) -> None:
        """verified: what the build's verify play said (passed, unverified); a copy or an
        adopted image carries what was recorded for its content, else unverified if the role
        has a verify play."""
        built = origin == "built"
        if verified is None and not built and manifest.get("verify"):
            verified = self.results.verified_as(self.exports.provider, fp) or "unverified"
        row = ImageRow(
            provider=self.exports.provider,
            account=self._account(),
            region=key.region,
            customer=self.exports.customer,
            distro=key.distro,
            role=key.role,
            fingerprint=fp,
            image_id=image.image_id,
            image_name=image.name,
            parent_image=image.tags.get("parent-image"),
            source_image=source or image.tags.get("parent-image"),
            origin=origin,
            manifest=manifest,
            packer_version=self._packer_version() if built and self.exports.provider != "local" else None,
            git_commit=self._git_commit() if built else None,
            playbook_override=manifest.get("playbook_override"),  # set only under playbook=PATH
            verified=verified,
        )
        with self.results.write() as con:
            self.results.record_image(row, con)
            if build_id is not None:
                self.results.finish_build(build_id, "ok", image.image_id, con=con)
        self.exports.write(self.results, key.distro, key.region)

    def made_here(self, key: ImageKey, image: CloudImage) -> None:
        """An image this run built or copied (its volumes are recorded for `doit images`)."""
        with self._lock:
            self.made.add(image.image_id)
        self.size(key, image)

    def size(self, key: ImageKey, image: CloudImage) -> None:
        if image.volume_gb is not None:
            self.results.set_size(self.exports.provider, self._account(), key.region, image)
