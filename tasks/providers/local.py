"""provider=local: images are root filesystem layers under the state folder, one per fingerprint.

`layers/<role>-<distro>-<fp12>/` is the layer: an overlay layer (what its play changed, over its
parent's stack; tasks/providers/layer_stack.py) or a full copy; `layers/<same>.json` beside it
holds what a cloud keeps as the image's name, date and tags. Writing that file is the commit
point, as the fingerprint tag is in a cloud. Lookups are a directory listing; nothing leaves the
machine. A layer another layer sits on keeps its files when it is deregistered, until the last
layer on it goes.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tasks.catalog.load import Distro
from tasks.errors import KilnError
from tasks.providers.base import CloudImage, VendorImage, by_fingerprint
from tasks.providers.layer_stack import Broken, ancestors, children, stack, whole

T = TypeVar("T")


class LocalProvider:
    name = "local"

    def __init__(self, distros: dict[str, Distro], state: Path) -> None:
        self._distros = distros
        self.root = state / "local"
        self.layers = self.root / "layers"
        self.cache = self.root / "cache"
        self._lock = threading.RLock()
        self._ours: list[CloudImage] | None = None
        self.calls: list[str] = []  # none: nothing here is a cloud call

    def account(self) -> str:
        return "local"

    def call(self, what: str, fn: Callable[[], T]) -> T:
        return fn()

    def credentials_expiry(self) -> float | None:
        return None

    def tree(self, image_id: str) -> Path:
        return self.layers / image_id

    def stack(self, image_id: str) -> list[Path]:
        """The directories that make the layer's tree, top first."""
        try:
            return stack(self.layers, self.cache, self.tree(image_id))
        except Broken as err:
            raise KilnError(f"provider local: layer {image_id} cannot be used: {err}; rebuild it with force=1") from None

    def _meta(self, image_id: str) -> Path:
        return self.layers / f"{image_id}.json"

    def our_images(self, region: str) -> list[CloudImage]:
        with self._lock:
            if self._ours is None:
                found = []
                for meta in sorted(self.layers.glob("*.json")) if self.layers.is_dir() else []:
                    try:
                        data = json.loads(meta.read_text())
                    except (OSError, ValueError):
                        continue  # a layer being written, or damaged: never used
                    if whole(self.layers, self.cache, self.tree(data["image_id"])):
                        found.append(CloudImage(data["image_id"], data["name"], "local", data["created"], data["tags"]))
                self._ours = found
            return self._ours

    def remember(self, region: str, image: CloudImage) -> None:
        with self._lock:
            ours = [i for i in self.our_images(region) if i.image_id != image.image_id]
            self._ours = [*ours, image]

    def forget(self, region: str) -> None:
        with self._lock:
            self._ours = None

    def images_by_fingerprint(self, region: str) -> dict[str, list[CloudImage]]:
        return by_fingerprint(self.our_images(region))

    def vendor_image(self, region: str, distro: str) -> VendorImage:
        suite = str((self._distros[distro].conf.get("local") or {}).get("suite", "?"))
        # The suite is the identity: the tree is made from whatever the suite holds today, and
        # server-base's refresh period brings the patches.
        return VendorImage(f"debootstrap:{suite}", f"debootstrap {suite} minbase", "debian", "")

    def describe_image(self, region: str, image_id: str) -> CloudImage | None:
        return next((i for i in self.our_images(region) if i.image_id == image_id), None)

    def commit(self, image: CloudImage) -> None:
        meta = self._meta(image.image_id)
        tmp = meta.with_name(f".{meta.name}.{os.getpid()}")
        record = {"image_id": image.image_id, "name": image.name, "created": image.created, "tags": image.tags}
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.replace(meta)
        self.remember("local", image)

    def tag_image(self, region: str, image: CloudImage | str, tags: dict[str, str]) -> None:
        image_id = image.image_id if isinstance(image, CloudImage) else image
        found = self.describe_image(region, image_id)
        if found is None:
            raise KilnError(f"provider local: layer {image_id} is gone from {self.layers}")
        self.commit(CloudImage(found.image_id, found.name, found.region, found.created, {**found.tags, **tags}))

    def deregister(self, region: str, image_id: str) -> None:
        lower = ancestors(self.layers, image_id)
        self._meta(image_id).unlink(missing_ok=True)  # uncommitted first: never half-found
        if image_id not in children(self.layers):
            self._remove(image_id)
            for parent in lower:  # parents deregistered earlier, kept only for this one
                if self._meta(parent).exists() or parent in children(self.layers):
                    break
                self._remove(parent)
        self.forget(region)

    def _remove(self, image_id: str) -> None:
        from tasks.providers.tree_release import release

        release(self.tree(image_id))
        shutil.rmtree(self.tree(image_id), ignore_errors=True)

    def _live(self, path: Path) -> bool:
        """An unfinished layer whose build is still running."""
        pid = path.name.rsplit(".", 1)[-1]
        return path.name.startswith(".") and pid.isdigit() and Path(f"/proc/{pid}").exists()

    def held_by_layers(self, leaving: set[str]) -> dict[str, str]:
        """Of the layers about to go, those that a layer staying sits on, directly or not."""
        held: dict[str, str] = {}
        for path in sorted(self.layers.iterdir()) if self.layers.is_dir() else []:
            stays = path.name not in leaving and (self._meta(path.name).exists() or self._live(path))
            if path.is_dir() and stays:
                for parent in ancestors(self.layers, path.name):
                    if parent in leaving:
                        held.setdefault(parent, f"layer {path.name}, which sits on it")
        return held

    def leftovers(self) -> list[Path]:
        """Trees that are no image: layers kept by debug=1 after a failure, half-made ones of
        runs that died (a running build's tree is never listed), and deregistered layers no
        staying layer sits on any more."""
        out = []
        for path in sorted(self.layers.iterdir()) if self.layers.is_dir() else []:
            if path.is_dir() and not self._meta(path.name).exists() and not self._live(path):
                out.append(path)
        held = self.held_by_layers({p.name for p in out})
        return [p for p in out if p.name not in held]

    def packer_env(self) -> dict[str, str]:
        return {}

    def packer_vars(self, region: str) -> dict[str, str]:
        return {}

    def client(self, *_: Any) -> Any:
        raise KilnError("provider local has no cloud API; this command works with aws and sandbox")
