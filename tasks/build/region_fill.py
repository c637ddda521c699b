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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tasks.build import interrupts
from tasks.errors import BuildFailed, Interrupted, KilnError

if TYPE_CHECKING:
    from tasks.cli.session import ImageKey, Run
    from tasks.providers.base import CloudImage


@dataclass
class Gate:
    done: threading.Event = field(default_factory=threading.Event)
    region: str | None = None  # where the image is being made, once known
    image: CloudImage | None = None
    error: BaseException | None = None


def home_region(run: Run) -> str:
    home = run.customer.conf.get("home_region")
    return str(home) if home in run.options.regions else run.options.regions[0]


def build_region(run: Run, key: ImageKey, fp: str) -> ImageKey:
    """Where the one build happens: home, if the same fingerprint is wanted there and its
    parent is there already (a parent still being copied would make it wait), else here."""
    from tasks.cli.session import ImageKey

    home = home_region(run)
    if home == key.region:
        return key
    there = ImageKey(key.role, key.distro, home)
    if run.fingerprint(there)[0] != fp:
        return key  # the home region has another vendor release: its image differs
    parent = run.catalog.roles[key.role].parent
    if parent is not None:
        parent_fp = run.fingerprint(ImageKey(parent, key.distro, home))[0]
        if not run.cloud_images(home).get(parent_fp):
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


def once(run: Run, key: ImageKey, fp: str, gates: dict[str, Gate], lock: threading.RLock) -> CloudImage:
    """The image of this fingerprint this run uses for every region: made once, here or elsewhere."""
    with lock:
        gate = gates.get(fp)
        owner = gate is None
        if gate is None:
            gate = gates[fp] = Gate()
    if not owner:
        if not gate.done.is_set():
            where = f" in {gate.region}" if gate.region else ""
            run.say(f"{key.label}: waiting for this run's one build of this fingerprint{where}")
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
        found = None if run.forced(key) else run.copy_source(key, fp)
        if found is not None:
            gate.region, gate.image = found.region, found
            return found
        target = build_region(run, key, fp)
        gate.region = target.region
        if target != key:
            run.say(f"{key.label}: built once, in {target.region}, for every region of this run; then copied here")
        image = run.build_here(target)
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
