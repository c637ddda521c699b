"""What every provider offers kiln: lookups batched per region, credentials for Packer, tagging."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CloudImage:
    image_id: str
    name: str
    region: str
    created: str
    tags: dict[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    # What distribution and lifecycle need to know; the defaults are those of a fresh image.
    state: str = "available"  # available | pending | disabled
    deprecation_time: str = ""  # ISO 8601, when set (now or in the future)
    # GiB of its volumes (what its snapshots hold at most; EBS snapshots are incremental).
    volume_gb: int | None = None

    @property
    def fingerprint(self) -> str | None:
        return self.tags.get("fingerprint")


@dataclass(frozen=True)
class VendorImage:
    """The vendor image a root starts from. Its identity in the fingerprint is name, owner and
    creation date: the same release has other ids in other regions."""

    image_id: str
    name: str
    owner: str
    created: str

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "owner": self.owner, "created": self.created}


def tainted_ids(images: Iterable[CloudImage]) -> set[str]:
    """Revoked images and everything built on them, transitively (parents are in the same region)."""
    images = list(images)
    tainted = {i.image_id for i in images if i.tags.get("revoked") is not None}
    grew = True
    while grew:
        grew = False
        for image in images:
            if image.image_id not in tainted and image.tags.get("parent-image") in tainted:
                tainted.add(image.image_id)
                grew = True
    return tainted


def by_fingerprint(images: list[CloudImage]) -> dict[str, list[CloudImage]]:
    """Usable images by fingerprint, newest first: never a revoked one, nor one built on a
    revoked image (its parent's fingerprint is unchanged, but what it was built on is not)."""
    tainted = tainted_ids(images)
    out: dict[str, list[CloudImage]] = {}
    for image in images:
        if image.fingerprint and image.image_id not in tainted:
            out.setdefault(image.fingerprint, []).append(image)
    for found in out.values():
        found.sort(key=lambda i: (i.created, i.name, i.image_id), reverse=True)
    return out


class Provider(Protocol):
    name: str

    def account(self) -> str: ...

    def our_images(self, region: str) -> list[CloudImage]:
        """Every image kiln made in this account and region (one cloud call, cached per run)."""
        ...

    def vendor_image(self, region: str, distro: str) -> VendorImage:
        """The newest vendor image for a distro (one cloud call per region for all distros)."""
        ...

    def packer_env(self) -> dict[str, str]:
        """Environment for a Packer run: fresh credentials, nothing written to disk."""
        ...

    def packer_vars(self, region: str) -> dict[str, str]:
        """Placement variables the provider adds (endpoint override, network ids)."""
        ...

    def tag_image(self, region: str, image: CloudImage | str, tags: dict[str, str]) -> None: ...

    def describe_image(self, region: str, image_id: str) -> CloudImage | None: ...


class ChannelStore(Protocol):
    """A provider whose cloud holds channels natively (AWS and the sandbox: SSM parameters of
    data type aws:ec2:image, which Terraform, CloudFormation and launch templates resolve)."""

    def put_channel(self, region: str, name: str, image_id: str, description: str) -> None: ...

    def read_channels(self, region: str, prefix: str) -> dict[str, str]:
        """Parameter name -> image id under a path: one paginated call per region."""
        ...
