"""One build per fingerprint in a run over several regions: the rest are copies.

The first image task of a fingerprint to reach the build (in any region, on any of doit's
threads) opens a gate and makes the image once: in the home region (the customer's
`home_region`, else the first region named) when the image can be built there now, else in its
own region; or, if some region of the account has the fingerprint already, it takes that image.
Every other region's task waits at the gate, then copies. Whoever opens the gate does the work,
so no task waits for one doit has not started: no deadlock with any `-n N`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tasks.build import interrupts
from tasks.catalog.load import Catalog
from tasks.errors import BuildFailed, Interrupted, KilnError
from tasks.models import ImageKey

if TYPE_CHECKING:
    from tasks.decide import CloudIndex, Fingerprints
    from tasks.providers.base import CloudImage


@dataclass
class Gate:
    done: threading.Event = field(default_factory=threading.Event)
    region: str | None = None  # where the image is being made, once known
    image: CloudImage | None = None
    error: BaseException | None = None


def build_region(
    key: ImageKey, fp: str, home: str, catalog: Catalog, fingerprints: Fingerprints, index: CloudIndex
) -> ImageKey:
    """Where the one build happens: home, if the same fingerprint is wanted there and its
    parent is there already (a parent still being copied would make it wait), else here."""
    if home == key.region:
        return key
    there = ImageKey(key.role, key.distro, home)
    if fingerprints(there)[0] != fp:
        return key  # the home region has another vendor release: its image differs
    parent = catalog.roles[key.role].parent
    if parent is not None:
        parent_fp = fingerprints(ImageKey(parent, key.distro, home))[0]
        if not index(home).get(parent_fp):
            return key
    return there


def _again(err: BaseException, key: ImageKey, region: str | None) -> BaseException:
    """The gate's failure as this task's own one line."""
    if isinstance(err, Interrupted):
        return Interrupted(str(err))
    if region == key.region:
        return BuildFailed(str(err)) if isinstance(err, BuildFailed) else KilnError(str(err))
    where = f" in {region}" if region else ""
    return BuildFailed(f"not copied: this run's one build of the image{where} failed ({err})")


def once(
    key: ImageKey,
    fp: str,
    gates: dict[str, Gate],
    lock: threading.RLock,
    *,
    forced: bool,
    copy_source: Callable[[ImageKey], CloudImage | None],
    build_region: Callable[[ImageKey], ImageKey],
    build_here: Callable[[ImageKey], CloudImage | None],
    say: Callable[[str], None],
) -> CloudImage:
    """The image of this fingerprint this run uses for every region: made once, here or elsewhere."""
    with lock:
        gate = gates.get(fp)
        owner = gate is None
        if gate is None:
            gate = gates[fp] = Gate()
    if not owner:
        if not gate.done.is_set():
            where = f" in {gate.region}" if gate.region else ""
            say(f"{key.label}: waiting for this run's one build of this fingerprint{where}")
        while not gate.done.wait(0.2):
            if interrupts.interrupted.is_set():
                raise Interrupted(
                    f"interrupted while waiting for the build{' in ' + gate.region if gate.region else ''}"
                )
        if gate.error is not None:
            raise _again(gate.error, key, gate.region) from None
        assert gate.image is not None
        return gate.image
    target: ImageKey | None = None
    try:
        found = None if forced else copy_source(key)
        if found is not None:
            gate.region, gate.image = found.region, found
            return found
        target = build_region(key)
        gate.region = target.region
        if target != key:
            say(f"{key.label}: built once, in {target.region}, for every region of this run; then copied here")
        image = build_here(target)
        if image is None:  # only provider=local builds without an image of the cloud's
            raise KilnError(f"{key.label}: region fill needs a cloud provider (aws, sandbox)")
        gate.image = image
        return image
    except BaseException as err:
        gate.error = err
        if target is not None and target != key:
            raise _again(err, key, target.region) from None
        raise
    finally:
        gate.done.set()
