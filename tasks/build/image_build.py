"""Make one image that the decision found missing: under this machine's lock for the
fingerprint and the account's lease, built once per run (other regions copy it), by Packer or,
for provider=local, as a layer. Takes plain values and the lower stages' parts; never the run."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.build.spec import Job, PendingChecks, Spec
from tasks.catalog.distribution import Distribution, encryption_tags
from tasks.catalog.load import Catalog, Customer
from tasks.decide import CloudIndex, Decider, Fingerprints, source_image
from tasks.models import ImageKey
from tasks.providers.base import CloudImage
from tasks.records.recorder import Recorder
from tasks.records.results import Results

if TYPE_CHECKING:
    from tasks.build.packer_plugins import Plugins
    from tasks.build.region_fill import Gate
    from tasks.inputs.plays import Plays


@dataclass
class Builder:
    catalog: Catalog
    customer: Customer
    state: Path
    provider_name: str
    regions: tuple[str, ...]
    distros: tuple[str, ...]
    copy: bool
    provision: bool
    provider: Any
    fingerprints: Fingerprints
    index: CloudIndex
    decider: Decider
    recorder: Recorder
    results: Results
    distribution: Distribution
    plays: Callable[[], Plays]
    plugins: Callable[[], Plugins]
    say: Callable[[str], None]
    counts: Counter[str]
    checks_beside: Callable[[list[str]], PendingChecks]  # provider=local's syntax checks
    build_ids: list[int] = field(default_factory=list)
    _gates: dict[str, Gate] = field(default_factory=dict)
    _unverified_said: set[str] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def build(self, key: ImageKey, job: Job) -> None:
        """One build per fingerprint in this run (the other regions copy it, see region_fill),
        each under this machine's lock and the account's lease."""
        fp, _ = self.fingerprints(key)
        if not (self.copy and self.provider_name in ("aws", "sandbox")):
            self.build_here(key, job)
            return
        from tasks.build.region_fill import build_region, once

        home = self.customer.conf.get("home_region")
        home = str(home) if home in self.regions else self.regions[0]
        made = once(
            key,
            fp,
            self._gates,
            self._lock,
            forced=job.forced,
            copy_source=lambda k: self.decider.copy_source(k, fp, self.regions),
            build_region=lambda k: build_region(k, fp, home, self.catalog, self.fingerprints, self.index),
            build_here=lambda k: self.build_here(k, job),
            say=self.say,
        )
        # Done if it is here and this region's (made by this run, or by the run we waited for);
        # else copied from there, or in place (here, but encrypted with another key).
        if made.region == key.region and (made.image_id in self.recorder.made or self.decider.placed_here(key, made)):
            return
        self.build_here(key, job, source=made)

    def build_here(self, key: ImageKey, job: Job, source: CloudImage | None = None) -> CloudImage | None:
        """Build under this machine's lock for the fingerprint, then the account's lease in the
        cloud: a run that had to wait for either looks for the other's image before building.
        source: copy that image here instead (this run made it in another region)."""
        fp, manifest = self.fingerprints(key)
        lock = f"{self.provider_name}-{key.region}-{fp[:32]}"
        from tasks.build.lease import build_lease
        from tasks.build.locks import image_lock

        def say(text: str) -> None:
            self.say(f"{key.label}: {text}")

        def meanwhile(who: str) -> CloudImage | None:
            return None if job.forced else self.decider.built_meanwhile(key, fp, manifest, who)

        conf = self.customer.conf
        if self.provider_name == "local":
            from tasks.build.rootfs import need_root

            need_root()  # said before waiting for anything
        from tasks.build.dead_builds import sweep  # what a killed build of this image left

        def swept() -> None:
            sweep(
                key,
                fp,
                provider_name=self.provider_name,
                provider=self.provider,
                results=self.results,
                state=self.state,
                workdir=self.state / "work" / self.place(key),
                say=self.say,
            )

        with image_lock(self.state, lock, say) as waited:
            if waited and (found := meanwhile("the run we waited for")):
                return found
            if self.provider_name == "local":
                swept()
                self._layer(key, job)
                return None
            if self.provider_name == "azure":
                # The cloud lease lives in DynamoDB (AWS only); on Azure only this machine's
                # lock keeps a fingerprint from being built twice at once.
                return self._packer(key, job)
            table, seconds = str(conf["lease_table"]), int(conf["lease_seconds"])
            with build_lease(self.provider, key.region, table, seconds, fp, say) as holder:
                swept()
                if holder and (found := meanwhile(holder)):
                    return found
                if source is not None:
                    return self._copy_from(key, fp, source)
                if self.copy and not job.forced and (here := self.decider.copy_source(key, fp, self.regions)):
                    return self._copy_from(key, fp, here)
                return self._packer(key, job)

    def _copy_from(self, key: ImageKey, fp: str, source: CloudImage) -> CloudImage:
        from tasks.build.copying import copy_image

        image = copy_image(
            key,
            source,
            fp,
            provider=self.provider,
            dist=self.distribution,
            parent_image=self._parent_here,
            say=self.say,
        )
        self.recorder.record(key, image, fp, self.fingerprints(key)[1], origin="copied", source=source.image_id)
        self.recorder.made_here(key, image)
        self.counts["copied"] += 1
        self.say(f"{key.label}: copied {source.image_id} from {source.region} as {image.image_id}")
        return image

    def _parent_here(self, key: ImageKey) -> str | None:
        """The image a copy here is built on: the vendor's release here, or the parent's image
        of this region (not the source region's)."""
        role = self.catalog.roles[key.role]
        if role.parent is None:
            return str(self.provider.vendor_image(key.region, key.distro).image_id)
        parent = ImageKey(role.parent, key.distro, key.region)
        local = self.index(key.region).get(self.fingerprints(parent)[0])
        return local[0].image_id if local else None

    def _layer(self, key: ImageKey, job: Job) -> None:
        from tasks.build.local_layers import build_layer, warn_old_layers
        from tasks.records.current import mainline

        spec = self.spec(key, job, "layer")
        image, build_id, final, status = build_layer(
            spec, self.catalog, self.customer, self.provider, self.results, self.plays(), self.say, self.checks_beside
        )
        verified = "passed" if spec.manifest.get("verify") else None
        self.recorder.record(key, image, spec.fp, spec.manifest, origin="built", build_id=build_id, verified=verified)
        self.counts["built"] += 1
        self.say(f"{key.label}: built layer {final}")
        if status is not None:  # the layer's package database, read directly (no dpkg runs)
            from tasks.records.packages import from_dpkg_status, store

            listed = from_dpkg_status(status)
            store(self.results, self.state, "local", image.image_id, key.role, key.distro, listed)
        customer, roles = self.recorder.exports.customer, self.catalog.topological()
        current = {
            i for d in self.distros for i in mainline(self.results, "local", customer, roles, d, "local").values()
        }
        warn_old_layers(self.provider.layers, current, self.say)

    def _packer(self, key: ImageKey, job: Job) -> CloudImage:
        from tasks.build.packer_build import PackerBuild
        from tasks.packer_bin import packer_version

        packer_version()  # a missing or too old Packer is said before anything is written
        spec = self.spec(key, job, "image")
        build = PackerBuild(
            spec,
            catalog=self.catalog,
            customer=self.customer,
            state=self.state,
            provider_name=self.provider_name,
            provision=self.provision,
            provider=self.provider,
            results=self.results,
            distribution=self.distribution,
            plays=self.plays,
            plugins=self.plugins,
            say=self.say,
        )
        image, build_id = build.run(self._started)
        verified = self._verified(key, build.verify)
        self.recorder.record(key, image, spec.fp, spec.manifest, origin="built", build_id=build_id, verified=verified)
        self.recorder.made_here(key, image)
        self.counts["built"] += 1
        self.say(f"{key.label}: built {image.image_id}")
        self._packages(key, image, build.workdir)
        return image

    def _packages(self, key: ImageKey, image: CloudImage, workdir: Path) -> None:
        """What the template's shell provisioner listed on the machine, if one ran."""
        from tasks.records.packages import LISTING, from_listing, store

        listing = workdir / LISTING
        if listing.is_file():
            listed = from_listing(listing.read_text(errors="replace"))
            store(self.results, self.state, self.provider_name, image.image_id, key.role, key.distro, listed)

    def _verified(self, key: ImageKey, verify: str | None) -> str | None:
        """passed where the template ran the verify play on a machine; the sandbox without
        provision=1 has none, which is said once per role."""
        if verify is None:
            return None
        if self.provider_name != "sandbox" or self.provision:
            return "passed"
        with self._lock:
            first = key.role not in self._unverified_said
            self._unverified_said.add(key.role)
        if first:
            self.say(
                f"{key.role}: not verified: the sandbox runs no machine without provision=1, so {verify} did not run"
                " (doit images shows the image unverified)"
            )
        return "unverified"

    def _started(self, build_id: int) -> None:
        """A build row exists: the cost line at the end counts it, failed or not."""
        with self._lock:
            self.build_ids.append(build_id)

    def place(self, key: ImageKey) -> str:
        """provider/customer/distro/region/role: an image's working and log folders."""
        return f"{self.provider_name}/{self.recorder.exports.customer}/{key.distro}/{key.region}/{key.role}"

    def spec(self, key: ImageKey, job: Job, what: str) -> Spec:
        fp, manifest = self.fingerprints(key)
        # Milliseconds: clouds refuse a duplicate name, and force=1 twice in a second is not rare.
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")[:-3]
        name = f"{key.role}-{key.distro}-{fp[:12]}" + (f"-{stamp}" if what == "image" else "")
        source = source_image(key, self.catalog, self.provider, self.index, self.fingerprints)
        place = self.place(key)
        logs = self.state / "logs" / place
        logs.mkdir(parents=True, exist_ok=True)
        return Spec(
            key=key,
            job=job,
            fp=fp,
            manifest=manifest,
            name=name,
            stamp=stamp,
            source=source,
            tags=self.image_tags(key, job, name, source),
            log=logs / f"{stamp}-{os.getpid()}.log",
            customer=self.recorder.exports.customer,
            place=place,
        )

    def image_tags(self, key: ImageKey, job: Job, name: str, source: str) -> dict[str, str]:
        """Every image's tags but the fingerprint, which is added last as the commit point."""
        role = self.catalog.roles[key.role]
        tags = {
            **self.customer.conf.get("tags", {}),
            "Name": name,
            "distro-id": key.distro,
            "role-id": role.role_id,
            "kiln-role": key.role,
            "customer": self.recorder.exports.customer,
            "parent-image": source,
            "built-by": "kiln",
        }
        if job.override and job.playbook:
            tags["playbook-override"] = job.playbook
        tags.update(encryption_tags(self.distribution, key.region))
        return tags
