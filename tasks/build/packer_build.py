"""One Packer build of one image: the var file, the play's environment, the capacity attempts,
the provisioned sandbox's target, then the commit point (the fingerprint tag)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.build.capacity import Capacity, no_capacity, plan
from tasks.build.var_file import hcl_value
from tasks.build.verify import STATUS as VERIFY_FAILED
from tasks.build.verify import packer_verify_failure
from tasks.catalog.distribution import Distribution, encryption_vars
from tasks.catalog.load import Catalog, Customer
from tasks.errors import BuildFailed, Interrupted, KilnError
from tasks.providers.base import CloudImage
from tasks.records.packages import LISTING
from tasks.records.results import Results

if TYPE_CHECKING:
    from tasks.build.packer_plugins import Plugins
    from tasks.build.spec import Spec
    from tasks.inputs.plays import Plays


class PackerBuild:
    def __init__(
        self,
        spec: Spec,
        *,
        catalog: Catalog,
        customer: Customer,
        state: Path,
        provider_name: str,
        provision: bool,
        provider: Any,
        results: Results,
        distribution: Distribution,
        plays: Callable[[], Plays],
        plugins: Callable[[], Plugins],
        say: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self.catalog = catalog
        self.customer = customer
        self.state = state
        self.provider_name = provider_name
        self.provision = provision
        self.provider = provider
        self.results = results
        self.distribution = distribution
        self.plays = plays
        self.plugins = plugins
        self.say = say
        self.workdir = state / "work" / spec.place

    def variables(self, attempt: Capacity) -> dict[str, Any]:
        key, spec = self.spec.key, self.spec
        playbook = spec.job.playbook
        variables: dict[str, Any] = {
            "region": key.region,
            "source_ami": spec.source,
            "image_name": spec.name,
            "tags": spec.tags,
            "manifest_path": str(self.workdir / "manifest.json"),
            "instance_profile": str(self.customer.conf["instance_profile"]),
            "ansible_dir": str(self.catalog.root / "provision" / "ansible"),
            "playbook_file": str(self.catalog.root / playbook) if playbook else "",
            "verify_file": str(self.catalog.root / self.verify) if self.verify else "",
            "packages_file": str(self.workdir / LISTING),
        }
        variables.update(attempt.variables)
        if self.provider_name == "aws":
            variables.update(self.customer.package(key.region))
        variables.update(self.provider.packer_vars(key.region))
        variables.update(encryption_vars(self.distribution, key.region))
        return variables

    def run(self, started: Callable[[int], None]) -> tuple[CloudImage, int]:
        """The image, tagged with its fingerprint, and its build row's id."""
        spec, key = self.spec, self.spec.key
        playbook, log, workdir = spec.job.playbook, spec.log, self.workdir
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        role = self.catalog.roles[key.role]
        attempts = plan(role, self.customer, self.provider_name)  # spot first, then on-demand, if asked
        variables = self.variables(attempts[0])
        var_file = workdir / "kiln.pkrvars.hcl"

        def write_vars() -> None:
            var_file.write_text("".join(f"{k} = {hcl_value(v)}\n" for k, v in sorted(variables.items())))

        write_vars()
        (workdir / "manifest.kiln.json").write_text(json.dumps(spec.manifest, indent=1, sort_keys=True))
        env = self.provider.packer_env()
        # A play on this machine (Packer's ansible provisioner) is audited; ansible-local runs
        # on the instance, with the requirements uploaded.
        plays_here = (
            bool(playbook)
            and self.catalog.distros[key.distro].ansible_mode == "remote"
            and (self.provider_name != "sandbox" or self.provision)
        )
        if playbook:
            env.update(self.plays().env(playbook, log))
            variables.update(self.plays().ansible_local_vars(playbook, workdir))
            write_vars()
        template, plugins = self.packer_input(workdir)
        self.warn_expiry()
        build_id = self.results.start_build(
            self.provider_name, key.region, spec.customer, key.distro, key.role, spec.fp, log
        )
        started(build_id)
        self.note_build(build_id, attempts[0], plugins)
        self.say(f"{key.label}: building {spec.name} from {spec.source} (log {log})")
        try:
            from tasks.build.packer_run import run_packer

            with contextlib.ExitStack() as stack:
                if self.provision and playbook:
                    from tasks.build.sandbox_target import sandbox_target

                    variables.update(
                        stack.enter_context(
                            sandbox_target(self.catalog, self.state, self.provider, key, workdir, log, self.say)
                        )
                    )
                    write_vars()

                def use(attempt: Capacity) -> None:
                    variables.update(attempt.variables)
                    write_vars()

                def packer(out: Path) -> str:
                    return run_packer(key.label, template, var_file, workdir, out, env, debug=spec.job.debug)

                image_id = self._attempts(attempts, build_id, use, packer)
        except Interrupted as err:
            self.results.finish_build(build_id, "interrupted", message=str(err))
            raise
        except BuildFailed as err:
            # The verify provisioner failed: Packer stopped before the image and cleaned up.
            failed = packer_verify_failure(log, self.verify) if self.verify else None
            self.results.finish_build(build_id, VERIFY_FAILED if failed else "failed", message=str(failed or err))
            if failed is not None:
                raise failed from None
            raise
        except KilnError as err:
            self.results.finish_build(build_id, "failed", message=str(err))
            raise
        if plays_here and playbook:
            missed = self.plays().missed_reads(key.label, key.role, playbook, log, spec.manifest)
            if missed:
                self.results.set_missed(build_id, missed)
        # The fingerprint tag is the commit point: only a finished, tagged image is ever found.
        # Packer tagged the image (and its snapshots) with everything but the fingerprint; we
        # know what it made, so no lookup is needed before the commit point.
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        image = CloudImage(image_id, spec.name, key.region, created, {**spec.tags, "fingerprint": spec.fp})
        try:
            self.provider.tag_image(key.region, image, {"fingerprint": spec.fp})
        except KilnError as err:
            self.results.finish_build(build_id, "failed", image_id, f"tagging failed: {err}")
            raise BuildFailed(self._untaggable(image_id, str(err)), str(log)) from None
        self.provider.remember(key.region, image)
        return self._with_volumes(image), build_id

    def packer_input(self, workdir: Path) -> tuple[Path, dict[str, str]]:
        """The rendered template itself for Packer 1.6.6; for 1.7 and newer a folder with it and
        the `required_plugins` block (never in the fingerprinted file), after `packer init`.
        Returns what to hand Packer and the plugin versions it will use."""
        from tasks.packer_bin import uses_plugins

        rendered = self.rendered
        if not uses_plugins():
            return rendered, {}
        return self.plugins().prepare(rendered, workdir / "template")

    @property
    def verify(self) -> str | None:
        """The role's verify play, which the template runs only where a machine is reached."""
        if not self.spec.job.playbook:
            return None
        return self.catalog.roles[self.spec.key.role].verify_play(self.catalog.root)

    @property
    def rendered(self) -> Path:
        render_label = f"{self.provider_name}-provisioned" if self.provision else self.provider_name
        key = self.spec.key
        return self.state / "rendered" / render_label / self.spec.customer / key.distro / f"{key.role}.pkr.hcl"

    def note_build(self, build_id: int, attempt: Capacity, plugins: dict[str, str]) -> None:
        from tasks.packer_bin import packer_version

        self.results.set_build(
            build_id,
            instance_type=attempt.instance_type,
            capacity=attempt.kind,
            packer=packer_version(),
            plugins=json.dumps(plugins, sort_keys=True) if plugins else None,
        )

    def _attempts(
        self,
        attempts: list[Capacity],
        build_id: int,
        use: Callable[[Capacity], None],
        packer: Callable[[Path], str],
    ) -> str:
        """Run Packer with each capacity in turn while the last one reported no capacity: spot,
        then on-demand once. The build row keeps the time of them all and the capacity used."""
        log, label = self.spec.log, self.spec.key.label
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
                        f"{label}: no spot capacity for {attempt.instance_type} ({reason}); building on demand"
                        f" on {attempts[n + 1].instance_type} instead (the spot attempt's log: {kept})"
                    )
            raise BuildFailed("no capacity to build on")  # not reached: the last attempt raised or returned
        finally:
            self.results.set_build(build_id, seconds=round(time.monotonic() - started, 3))

    def _with_volumes(self, image: CloudImage) -> CloudImage:
        """The image as the cloud describes it (its volumes), after the commit point: one call
        per build, and a failure only leaves its size unknown."""
        try:
            described = self.provider.describe_image(self.spec.key.region, image.image_id)
        except KilnError:
            return image
        if described is None:
            return image
        return dataclasses.replace(image, volume_gb=described.volume_gb, snapshot_ids=described.snapshot_ids)

    def _untaggable(self, image_id: str, why: str) -> str:
        """An image without its fingerprint tag is never found again: remove it rather than
        leave it to cost money, and say what happened either way."""
        try:
            self.provider.deregister(self.spec.key.region, image_id)
        except KilnError as err:
            return f"{image_id} was built but could not be tagged ({why}) nor deregistered ({err}); it will never be reused: deregister it by hand"
        return f"{image_id} was built but could not be tagged ({why}); it was deregistered and will be rebuilt next run"

    def warn_expiry(self) -> None:
        expiry = self.provider.credentials_expiry()
        if expiry is not None:
            left = expiry - time.time()
            if left < 30 * 60:
                self.say(
                    f"warning: the AWS credentials expire in {int(left // 60)} minutes, before a build usually ends"
                )
