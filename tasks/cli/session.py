"""One kiln run: the catalog and options, the provider (made on first cloud use), fingerprints,
the up-to-date check shared by every image task, and the build."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.catalog.load import Catalog, Role
from tasks.cli.failures import FAILURES
from tasks.cli.options import Options
from tasks.errors import BuildFailed, Interrupted, KilnError
from tasks.inputs.statcache import StatCache
from tasks.records.results import ImageRow, Results

if TYPE_CHECKING:
    from collections.abc import Callable

    from tasks.build.capacity import Capacity
    from tasks.build.packer_plugins import Plugins
    from tasks.inputs.ansible_run import AnsibleContent
    from tasks.providers.base import CloudImage

# Modules needed only to check or build an image are imported where used: `doit list` makes
# a Run too, and must stay as cheap as doit's own listing.


@dataclass(frozen=True)
class ImageKey:
    role: str
    distro: str
    region: str

    @property
    def task(self) -> str:
        return f"{self.role}:{self.distro}@{self.region}"

    @property
    def label(self) -> str:
        return f"{self.role}/{self.distro}/{self.region}"


def hcl_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = "\n".join(f"  {hcl_value(str(k))} = {hcl_value(v)}" for k, v in sorted(value.items()))
        return "{\n" + inner + "\n}"
    if isinstance(value, list):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # JSON string escapes are HCL's; template sequences must not be interpreted.
    return json.dumps(str(value)).replace("${", "$${").replace("%{", "%%{")


class Run:
    def __init__(self, catalog: Catalog, options: Options) -> None:
        self.catalog = catalog
        self.options = options
        self.customer = catalog.customer(options.customer)
        self.state = catalog.state
        self.results = Results(self.state / "results.sqlite")
        self.statcache = StatCache(self.state / "statcache.marshal")
        self._ansible: AnsibleContent | None = None
        self.selected: set[str] = set()
        FAILURES.state = self.state
        FAILURES.by_task.clear()  # a new command line starts with none
        self.failures = FAILURES
        self.counts: Counter[str] = Counter()
        self._provider: Any = None
        self._fingerprints: dict[ImageKey, tuple[str, dict[str, Any]]] = {}
        self._confirmed: set[str] = set()
        self._lock = threading.RLock()
        self._git: str | None = None
        # Commands that read the database and local files only (why, images) take the vendor
        # image as last recorded instead of asking the cloud.
        self.offline = False
        self._warm: threading.Thread | None = None
        # One build per fingerprint across this run's regions (region_fill), and what this run
        # made: its builds (for the cost line) and its images (never "up to date" to itself).
        self._gates: dict[str, Any] = {}
        self._made: set[str] = set()
        self.build_ids: list[int] = []
        self._plugins: Plugins | None = None

    # -- what the command line asked ----------------------------------------------------------

    def named(self, role: str) -> bool:
        return any(s == role or s.startswith(f"{role}:") for s in self.selected)

    def forced(self, key: ImageKey) -> bool:
        if self.options.force == "1":
            return self.named(key.role)
        if self.options.force == "chain":
            return any(
                self.named(r) and key.role in (x.name for x in self.catalog.chain(r)) for r in self.catalog.roles
            )
        return False

    def playbook(self, role: Role) -> tuple[str | None, bool]:
        """(playbook path, is an override): the override applies to the named roles only."""
        if self.options.playbook and role.playbook is not None and self.named(role.name):
            return self.options.playbook, True
        return role.playbook, False

    # -- parts made on first use --------------------------------------------------------------

    @property
    def provider(self) -> Any:
        with self._lock:
            if self._provider is None:
                if self.options.provider == "sandbox":
                    from tasks.providers.sandbox import SandboxProvider

                    self._provider = SandboxProvider(self.catalog, self.state, self._chosen_distros())
                elif self.options.provider == "aws":
                    from tasks.providers.aws import AwsProvider

                    self._provider = AwsProvider(self._chosen_distros(), self.state)
                elif self.options.provider == "local":
                    from tasks.providers.local import LocalProvider

                    self._provider = LocalProvider(self._chosen_distros(), self.state)
                elif self.options.provider == "azure":
                    from tasks.providers.azure import AzureProvider

                    self._provider = AzureProvider(self._chosen_distros(), self.customer, self.state)
                else:
                    raise KilnError(
                        f"variable provider: provider '{self.options.provider}' is not available yet; use aws, sandbox or azure"
                    )
            return self._provider

    @property
    def ansible(self) -> AnsibleContent:
        """The catalog's Ansible content, each playbook scanned once per run (made on first use:
        `doit list` compiles none of its patterns)."""
        with self._lock:
            if self._ansible is None:
                from tasks.inputs.ansible_run import AnsibleContent

                self._ansible = AnsibleContent(self.catalog.root, self.state, self.say)
            return self._ansible

    @property
    def plugins(self) -> Plugins:
        """packer/plugins.toml and the plugin sets `packer init` made ready in this run."""
        with self._lock:
            if self._plugins is None:
                from tasks.build.packer_plugins import Plugins

                self._plugins = Plugins(self.catalog.root, self.state, self.say)
            return self._plugins

    def note_made(self, key: ImageKey, image: CloudImage) -> None:
        """An image this run built or copied: its volumes are recorded for `doit images`."""
        with self._lock:
            self._made.add(image.image_id)
        self.note_size(key, image)

    def note_size(self, key: ImageKey, image: CloudImage) -> None:
        if image.volume_gb is not None:
            self.results.set_size(self.options.provider, self.provider.account(), key.region, image)

    def warm_up(self) -> None:
        """Import the cloud SDK and make the first client in the background while doit checks
        its dependencies: a third of a second, paid once per run."""
        if self.options.provider not in ("aws", "sandbox") or not any(
            ":" in s or s in self.catalog.roles for s in self.selected
        ):
            return

        def warm() -> None:
            with contextlib.suppress(Exception):  # the real call reports any failure
                self.provider.client("ec2", self.options.regions[0])

        self._warm = threading.Thread(target=warm, name="kiln-warm-up", daemon=True)
        self._warm.start()

    def settle(self) -> None:
        """Let the warm-up finish before the process exits: a run that fails fast (a lint
        finding) would otherwise end it while it starts the sandbox, leaving a server that no
        pid file records and `doit sandbox-stop` cannot stop."""
        if self._warm is not None:
            self._warm.join(timeout=90)

    def _chosen_distros(self) -> dict[str, Any]:
        # The vendor lookup asks for these distros' images only.
        return {d: self.catalog.distros[d] for d in self.options.distros}

    def cloud_calls(self) -> list[str]:
        return list(self._provider.calls) if self._provider is not None else []

    @property
    def render_as(self) -> str:
        """The provider templates are rendered for: with provision=1 the sandbox runs exactly
        what AWS would, Ansible provisioner included."""
        return "aws" if self.options.provision else self.options.provider

    @property
    def render_label(self) -> str:
        return f"{self.options.provider}-provisioned" if self.options.provision else self.options.provider

    def rendered_path(self, role: str, distro: str) -> Path:
        o = self.options
        return self.state / "rendered" / self.render_label / o.customer / distro / f"{role}.pkr.hcl"

    def git_commit(self) -> str | None:
        if self._git is None:
            proc = subprocess.run(
                ["git", "-C", str(self.catalog.root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
            )
            self._git = proc.stdout.strip() if proc.returncode == 0 else ""
        return self._git or None

    # -- fingerprints -------------------------------------------------------------------------

    def fingerprint(self, key: ImageKey) -> tuple[str, dict[str, Any]]:
        with self._lock:
            if key in self._fingerprints:
                return self._fingerprints[key]
        role = self.catalog.roles[key.role]
        if role.parent is not None:
            origin = {"parent_fingerprint": self.fingerprint(ImageKey(role.parent, key.distro, key.region))[0]}
        elif self.offline:
            origin = self.recorded_vendor(key)
            if not origin:
                # Only the cloud's tags are known (a synced database): trust the recorded root.
                from tasks.fleet.inventory import current_row

                row = current_row(self, key.role, key.distro, key.region)
                if row is not None:
                    return str(row["fingerprint"]), {}
        else:
            origin = self.provider.vendor_image(key.region, key.distro).identity()
        playbook, override = self.playbook(role)
        rendered = self.rendered_path(key.role, key.distro)
        if not rendered.exists():
            raise KilnError(f"{rendered}: rendered template missing; run the whole task, not the image alone")
        from tasks.inputs.fingerprints import content_manifest, fingerprint_of

        manifest = content_manifest(
            self.catalog,
            self.statcache,
            self.ansible,
            role=role,
            distro=key.distro,
            customer=self.customer,
            provider=self.options.provider,
            rendered=rendered,
            playbook=playbook,
            override=override,
            origin=origin,
        )
        self.statcache.save()
        result = (fingerprint_of(manifest), manifest)
        with self._lock:
            self._fingerprints[key] = result
        return result

    def recorded_vendor(self, key: ImageKey) -> dict[str, str]:
        o = self.options
        rows = self.results.read(
            "SELECT manifest FROM images WHERE provider=? AND customer=? AND distro=? AND region=? AND role=?"
            " AND manifest LIKE '%vendor_image%' ORDER BY created_at DESC, id DESC LIMIT 1",
            (o.provider, o.customer, key.distro, key.region, key.role),
        )
        if not rows:
            return {}
        vendor: dict[str, str] = json.loads(rows[0]["manifest"])["vendor_image"]
        return vendor

    # -- up to date ---------------------------------------------------------------------------

    def cloud_images(self, region: str) -> dict[str, list[CloudImage]]:
        found: dict[str, list[CloudImage]] = self.provider.images_by_fingerprint(region)
        with self._lock:
            first = region not in self._confirmed
            self._confirmed.add(region)
        if first:
            self.results.confirmed(self.options.provider, self.provider.account(), region)
        return found

    def is_current(self, key: ImageKey) -> bool:
        fp, manifest = self.fingerprint(key)
        if self.forced(key):
            return False
        provider, account = self.options.provider, self.provider.account()
        cloud = self.cloud_images(key.region).get(fp, [])
        from tasks.catalog.distribution import distribution, placed

        # Encrypted with another KMS key than the region's: not this region's image (re-copied).
        dist = distribution(self.customer.conf, provider)
        cloud = [i for i in cloud if placed(dist, key.region, i.tags)]
        known = {r["image_id"] for r in self.results.images_for(provider, account, key.region, fp)}
        existing = {i.image_id for i in self.provider.our_images(key.region)}
        # An image the database knows but the cloud lost (deregistered behind kiln's back).
        self.results.mark_gone(provider, account, key.region, sorted(known - existing))
        if not cloud:
            return False
        image = cloud[0]
        if image.image_id in self._made:
            return True  # made by this run's task of another region (region fill): counted there
        if image.image_id not in known:
            self.record(key, image, fp, manifest, origin="adopted")
            self.note_size(key, image)
            self.counts["adopted"] += 1
            self.say(f"{key.label}: adopted {image.image_id} (same fingerprint, built elsewhere)")
        else:
            self.counts["up to date"] += 1
        return True

    def record(
        self,
        key: ImageKey,
        image: CloudImage,
        fp: str,
        manifest: dict[str, Any],
        origin: str,
        build_id: int | None = None,
        source: str | None = None,
    ) -> None:
        from tasks.build.packer_bin import packer_version
        from tasks.records.exports import write_exports

        _, override = self.playbook(self.catalog.roles[key.role])
        row = ImageRow(
            provider=self.options.provider,
            account=self.provider.account(),
            region=key.region,
            customer=self.options.customer,
            distro=key.distro,
            role=key.role,
            fingerprint=fp,
            image_id=image.image_id,
            image_name=image.name,
            parent_image=image.tags.get("parent-image"),
            source_image=source or image.tags.get("parent-image"),
            origin=origin,
            manifest=manifest,
            packer_version=packer_version() if origin == "built" and self.options.provider != "local" else None,
            git_commit=self.git_commit() if origin == "built" else None,
            playbook_override=manifest.get("playbook_override") if override else None,
        )
        with self.results.write() as con:
            self.results.record_image(row, con)
            if build_id is not None:
                self.results.finish_build(build_id, "ok", image.image_id, con=con)
        write_exports(self, key.distro, key.region)

    # -- building -----------------------------------------------------------------------------

    def source_image(self, key: ImageKey) -> str:
        role = self.catalog.roles[key.role]
        if role.parent is None:
            return str(self.provider.vendor_image(key.region, key.distro).image_id)
        parent = ImageKey(role.parent, key.distro, key.region)
        found = self.cloud_images(key.region).get(self.fingerprint(parent)[0])
        if not found:
            raise KilnError(f"{key.label}: parent {parent.label} has no image; build it first (doit {role.parent})")
        return found[0].image_id

    def build(self, key: ImageKey) -> None:
        """One build per fingerprint in this run (the other regions copy it, see region_fill),
        each under this machine's lock and the account's lease."""
        fp, _ = self.fingerprint(key)
        if not (self.options.copy and self.options.provider in ("aws", "sandbox")):
            self.build_here(key)
            return
        from tasks.build.region_fill import once

        made = once(self, key, fp, self._gates, self._lock)
        # Done if it is here and this region's (made by this run, or by the run we waited for);
        # else copied from there, or in place (here, but encrypted with another key).
        if made.region == key.region and (made.image_id in self._made or self._placed(key, made)):
            return
        self.build_here(key, source=made)

    def _placed(self, key: ImageKey, image: CloudImage) -> bool:
        from tasks.catalog.distribution import distribution, placed

        return bool(placed(distribution(self.customer.conf, self.options.provider), key.region, image.tags))

    def build_here(self, key: ImageKey, source: CloudImage | None = None) -> CloudImage | None:
        """Build under this machine's lock for the fingerprint, then the account's lease in the
        cloud: a run that had to wait for either looks for the other's image before building.
        source: copy that image here instead (this run made it in another region)."""
        fp, _ = self.fingerprint(key)
        lock = f"{self.options.provider}-{key.region}-{fp[:32]}"
        from tasks.build.lease import build_lease
        from tasks.build.locks import image_lock

        def say(text: str) -> None:
            self.say(f"{key.label}: {text}")

        conf = self.customer.conf
        if self.options.provider == "local":
            from tasks.build.rootfs import need_root

            need_root()  # said before waiting for anything
        from tasks.build.dead_builds import sweep  # what a killed build of this image left

        with image_lock(self.state, lock, say) as waited:
            if waited and not self.forced(key) and (found := self._built_meanwhile(key, fp, "the run we waited for")):
                return found
            if self.options.provider == "local":
                from tasks.build.local_layers import build_layer

                sweep(self, key, fp)
                build_layer(self, key)
                return None
            if self.options.provider == "azure":
                # The cloud lease lives in DynamoDB (AWS only); on Azure only this machine's
                # lock keeps a fingerprint from being built twice at once.
                return self._build(key)
            table, seconds = str(conf["lease_table"]), int(conf["lease_seconds"])
            with build_lease(self.provider, key.region, table, seconds, fp, say) as holder:
                sweep(self, key, fp)
                if holder and not self.forced(key) and (found := self._built_meanwhile(key, fp, holder)):
                    return found
                if source is not None:
                    return self._copy_from(key, fp, source)
                if self.options.copy and not self.forced(key) and (copied := self._copy_fill(key, fp)):
                    return copied
                return self._build(key)

    def copy_source(self, key: ImageKey, fp: str) -> CloudImage | None:
        """An image of this fingerprint to copy from: here (one encrypted with another key than the
        region's, re-copied in place) or in another region of this account; None if there is none."""
        o = self.options
        account = self.provider.account()
        # Regions the database knows first, then this run's other regions (looked up already).
        regions = self.results.copy_regions(o.provider, account, fp, key.region)
        regions += [r for r in o.regions if r != key.region and r not in regions]
        # Here first: an image here encrypted with another key than the region's is re-copied in place.
        regions.insert(0, key.region)
        return next((found[0] for r in regions if (found := self.cloud_images(r).get(fp))), None)

    def _copy_fill(self, key: ImageKey, fp: str) -> CloudImage | None:
        """The same fingerprint in another region of this account: copy it instead of building
        (minutes and no instance, instead of a build)."""
        source = self.copy_source(key, fp)
        return self._copy_from(key, fp, source) if source is not None else None

    def _copy_from(self, key: ImageKey, fp: str, source: CloudImage) -> CloudImage:
        from tasks.build.copying import copy_image

        image = copy_image(self, key, source, fp)
        self.record(key, image, fp, self.fingerprint(key)[1], origin="copied", source=source.image_id)
        self.note_made(key, image)
        self.counts["copied"] += 1
        self.say(f"{key.label}: copied {source.image_id} from {source.region} as {image.image_id}")
        return image

    def _built_meanwhile(self, key: ImageKey, fp: str, who: str) -> CloudImage | None:
        """Look again (one call): the run we waited for may have made the image."""
        self.provider.forget(key.region)
        found = self.cloud_images(key.region).get(fp)
        if not found:
            return None
        image = found[0]
        known = {
            r["image_id"]
            for r in self.results.images_for(self.options.provider, self.provider.account(), key.region, fp)
        }
        if image.image_id not in known:
            self.record(key, image, fp, self.fingerprint(key)[1], origin="adopted")
            self.note_size(key, image)
        self.counts["built by another run"] += 1
        self.say(f"{key.label}: {image.image_id} was built meanwhile by {who}")
        return image

    def _build(self, key: ImageKey) -> CloudImage:
        from tasks.build.packer_bin import packer_version

        packer_version()  # a missing or too old Packer is said before anything is written
        fp, manifest = self.fingerprint(key)
        role = self.catalog.roles[key.role]
        provider = self.provider
        # Milliseconds: clouds refuse a duplicate name, and force=1 twice in a second is not rare.
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")[:-3]
        name = f"{key.role}-{key.distro}-{fp[:12]}-{stamp}"
        source = self.source_image(key)
        playbook, _ = self.playbook(role)
        tags = self.image_tags(key, name, source)
        o = self.options
        workdir = self.state / "work" / self.place(key)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(key, stamp)
        variables: dict[str, Any] = {
            "region": key.region,
            "source_ami": source,
            "image_name": name,
            "tags": tags,
            "manifest_path": str(workdir / "manifest.json"),
            "instance_profile": str(self.customer.conf["instance_profile"]),
            "ansible_dir": str(self.catalog.root / "provision" / "ansible"),
            "playbook_file": str(self.catalog.root / playbook) if playbook else "",
        }
        from tasks.build.capacity import plan

        attempts = plan(self, key)  # on-demand, or spot first and on-demand if there is no capacity
        variables.update(attempts[0].variables)
        if o.provider == "aws":
            variables.update(self.customer.package(key.region))
        variables.update(provider.packer_vars(key.region))
        from tasks.catalog.distribution import distribution, encryption_vars

        variables.update(encryption_vars(distribution(self.customer.conf, o.provider), key.region))
        var_file = workdir / "kiln.pkrvars.hcl"

        def write_vars() -> None:
            var_file.write_text("".join(f"{k} = {hcl_value(v)}\n" for k, v in sorted(variables.items())))

        write_vars()
        (workdir / "manifest.kiln.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        env = provider.packer_env()
        # A play on this machine (Packer's ansible provisioner) is audited; ansible-local runs
        # on the instance, with the requirements uploaded.
        plays_here = (
            bool(playbook)
            and self.catalog.distros[key.distro].ansible_mode == "remote"
            and (o.provider != "sandbox" or o.provision)
        )
        if playbook:
            env.update(self.play_env(playbook, log))
            variables.update(self.ansible_local_vars(playbook, workdir))
            write_vars()
        template, plugins = self.packer_input(self.rendered_path(key.role, key.distro), workdir)
        self.warn_expiry()
        build_id = self.results.start_build(o.provider, key.region, o.customer, key.distro, key.role, fp, log)
        self.note_build(build_id, attempts[0], plugins)
        self.say(f"{key.label}: building {name} from {source} (log {log})")
        try:
            from tasks.build.packer_run import run_packer

            with contextlib.ExitStack() as stack:
                if o.provision and playbook:
                    from tasks.build.sandbox_target import sandbox_target

                    variables.update(stack.enter_context(sandbox_target(self, key, workdir, log)))
                    write_vars()

                def use(attempt: Capacity) -> None:
                    variables.update(attempt.variables)
                    write_vars()

                def packer(out: Path) -> str:
                    return run_packer(
                        key.label, template, var_file, workdir, out, env, debug=o.debug and self.named(key.role)
                    )

                image_id = self._attempts(key, attempts, build_id, use, packer, log)
        except Interrupted as err:
            self.results.finish_build(build_id, "interrupted", message=str(err))
            raise
        except (BuildFailed, KilnError) as err:
            self.results.finish_build(build_id, "failed", message=str(err))
            raise
        if plays_here and playbook:
            self.check_reads(key, build_id, playbook, log, manifest)
        # The fingerprint tag is the commit point: only a finished, tagged image is ever found.
        from tasks.providers.base import CloudImage

        # Packer tagged the image (and its snapshots) with everything but the fingerprint; we
        # know what it made, so no lookup is needed before the commit point.
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        image = CloudImage(image_id, name, key.region, created, {**tags, "fingerprint": fp})
        try:
            provider.tag_image(key.region, image, {"fingerprint": fp})
        except KilnError as err:
            self.results.finish_build(build_id, "failed", image_id, f"tagging failed: {err}")
            raise BuildFailed(self._untaggable(key, image_id, str(err)), str(log)) from None
        provider.remember(key.region, image)
        self.record(key, image, fp, manifest, origin="built", build_id=build_id)
        self.note_made(key, self._with_volumes(key, image))
        self.counts["built"] += 1
        self.say(f"{key.label}: built {image_id}")
        return image

    # -- what Packer is handed, how it is retried, what a build cost ----------------------------

    def packer_input(self, rendered: Path, workdir: Path) -> tuple[Path, dict[str, str]]:
        """The rendered template itself for Packer 1.6.6; for 1.7 and newer a folder with it and
        the `required_plugins` block (never in the fingerprinted file), after `packer init`.
        Returns what to hand Packer and the plugin versions it will use."""
        from tasks.build.packer_bin import uses_plugins

        if not uses_plugins():
            return rendered, {}
        return self.plugins.prepare(rendered, workdir / "template")

    def note_build(self, build_id: int, attempt: Capacity, plugins: dict[str, str]) -> None:
        from tasks.build.packer_bin import packer_version

        with self._lock:
            self.build_ids.append(build_id)
        self.results.set_build(
            build_id,
            instance_type=attempt.instance_type,
            capacity=attempt.kind,
            packer=packer_version(),
            plugins=json.dumps(plugins, sort_keys=True) if plugins else None,
        )

    def _attempts(
        self,
        key: ImageKey,
        attempts: list[Capacity],
        build_id: int,
        use: Callable[[Capacity], None],
        packer: Callable[[Path], str],
        log: Path,
    ) -> str:
        """Run Packer with each capacity in turn while the last one reported no capacity: spot,
        then on-demand once. The build row keeps the time of them all and the capacity used."""
        import time

        from tasks.build.capacity import no_capacity

        started = time.monotonic()
        try:
            for n, attempt in enumerate(attempts):
                if n:
                    use(attempt)
                    self.results.set_build(build_id, instance_type=attempt.instance_type, capacity=attempt.kind)
                try:
                    return packer(log)
                except BuildFailed as err:
                    reason = no_capacity(str(err), log) if attempt.spot and n + 1 < len(attempts) else None
                    if reason is None:
                        raise
                    kept = log.with_name(f"{log.stem}.spot{log.suffix}")
                    log.replace(kept)
                    self.say(
                        f"{key.label}: no spot capacity for {attempt.instance_type} ({reason}); building on demand"
                        f" on {attempts[n + 1].instance_type} instead (the spot attempt's log: {kept})"
                    )
            raise BuildFailed("no capacity to build on")  # not reached: the last attempt raised or returned
        finally:
            self.results.set_build(build_id, seconds=round(time.monotonic() - started, 3))

    def _with_volumes(self, key: ImageKey, image: CloudImage) -> CloudImage:
        """The image as the cloud describes it (its volumes), after the commit point: one call
        per build, and a failure only leaves its size unknown."""
        try:
            described = self.provider.describe_image(key.region, image.image_id)
        except KilnError:
            return image
        if described is None:
            return image
        return dataclasses.replace(image, volume_gb=described.volume_gb, snapshot_ids=described.snapshot_ids)

    # -- plays and the read audit --------------------------------------------------------------

    @staticmethod
    def reads_file(log: Path) -> Path:
        return log.with_suffix(".reads")

    def play_env(self, playbook: str, log: Path) -> dict[str, str]:
        """Where Ansible looks (the same on every provider) and the read audit, for one play."""
        from tasks.inputs.audit import audit_env

        self.ansible.say_notes(playbook)
        play = self.ansible.play(playbook)
        return {**play.layout.env(), **audit_env(self.reads_file(log), play.watched())}

    def ansible_local_vars(self, playbook: str, workdir: Path) -> dict[str, str]:
        """ansible-local runs on the instance from an uploaded copy of provision/ansible: the
        requirements go up too, and the roles path is said relative to that copy."""
        play = self.ansible.play(playbook)
        galaxy = play.layout.installed
        if galaxy is None:
            galaxy = workdir / "no-requirements"
            for sub in ("roles", "collections"):
                (galaxy / sub).mkdir(parents=True, exist_ok=True)
        ansible_dir = self.catalog.root / "provision" / "ansible"
        roles = [str(p.relative_to(ansible_dir)) for p in play.layout.roles_path if p.is_relative_to(ansible_dir)]
        remote = "/tmp/kiln-galaxy"
        command = (
            f"ANSIBLE_ROLES_PATH={':'.join([*roles, remote + '/roles'])}"
            f" ANSIBLE_COLLECTIONS_PATH={remote}/collections ANSIBLE_FORCE_COLOR=1 PYTHONUNBUFFERED=1 ansible-playbook"
        )
        return {"galaxy_dir": str(galaxy), "ansible_local_command": command}

    def check_reads(
        self, key: ImageKey, build_id: int, playbook: str, log: Path, manifest: dict[str, Any]
    ) -> list[str]:
        """Files the play opened that are not among the image's inputs: said, and recorded."""
        from tasks.inputs.audit import ignored, read_files

        play = self.ansible.play(playbook)
        keep = [play.layout.installed] if play.layout.installed is not None else []
        read = read_files(self.reads_file(log), ignored(self.catalog.root, self.state), keep)
        known = {play.path_of(name) for name in manifest.get("files", {})}
        missed = [play.key(p) for p in read if p not in known]
        for name in missed:
            self.say(
                f"warning: {key.label}: the play read {name}, which is not an input of role {key.role}:"
                f" a change to it would not rebuild the image (recorded; doit why {key.role} shows it)"
            )
        if missed:
            self.results.set_missed(build_id, missed)
        return missed

    def place(self, key: ImageKey) -> str:
        o = self.options
        return f"{o.provider}/{o.customer}/{key.distro}/{key.region}/{key.role}"

    def log_path(self, key: ImageKey, stamp: str) -> Path:
        logs = self.state / "logs" / self.place(key)
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"{stamp}-{os.getpid()}.log"

    def image_tags(self, key: ImageKey, name: str, source: str) -> dict[str, str]:
        """Every image's tags but the fingerprint, which is added last as the commit point."""
        role = self.catalog.roles[key.role]
        playbook, override = self.playbook(role)
        tags = {
            **self.customer.conf.get("tags", {}),
            "Name": name,
            "distro-id": key.distro,
            "role-id": role.role_id,
            "kiln-role": key.role,
            "customer": self.options.customer,
            "parent-image": source,
            "built-by": "kiln",
        }
        if override and playbook:
            tags["playbook-override"] = playbook
        from tasks.catalog.distribution import distribution, encryption_tags

        tags.update(encryption_tags(distribution(self.customer.conf, self.options.provider), key.region))
        return tags

    def _untaggable(self, key: ImageKey, image_id: str, why: str) -> str:
        """An image without its fingerprint tag is never found again: remove it rather than
        leave it to cost money, and say what happened either way."""
        try:
            self.provider.deregister(key.region, image_id)
        except KilnError as err:
            return f"{image_id} was built but could not be tagged ({why}) nor deregistered ({err}); it will never be reused: deregister it by hand"
        return f"{image_id} was built but could not be tagged ({why}); it was deregistered and will be rebuilt next run"

    def warn_expiry(self) -> None:
        expiry = self.provider.credentials_expiry()
        if expiry is not None:
            import time

            left = expiry - time.time()
            if left < 30 * 60:
                self.say(
                    f"warning: the AWS credentials expire in {int(left // 60)} minutes, before a build usually ends"
                )

    @staticmethod
    def say(text: str) -> None:
        import sys

        sys.stderr.write(f"kiln: {text}\n")
        sys.stderr.flush()
