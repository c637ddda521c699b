"""One kiln command line: the catalog and options it was given, and the stages' parts made on
first use and wired together here (the only place that knows them all). Task generators and
fleet commands use it; no stage below receives it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.catalog.load import Catalog, Role
from tasks.cli.failures import FAILURES
from tasks.errors import KilnError
from tasks.inputs.statcache import StatCache
from tasks.models import ImageKey, Options
from tasks.records.results import Results

if TYPE_CHECKING:
    from tasks.build.image_build import Builder
    from tasks.build.packer_plugins import Plugins
    from tasks.build.spec import Job, PendingChecks
    from tasks.catalog.distribution import Distribution
    from tasks.decide import CloudIndex, Decider
    from tasks.inputs.ansible_run import AnsibleContent
    from tasks.inputs.fingerprinter import Fingerprinter
    from tasks.inputs.plays import Plays
    from tasks.providers.base import CloudImage
    from tasks.records.exports import Exports
    from tasks.records.recorder import Recorder

# Modules needed only to check or build an image are imported where used: `doit list` makes
# a Session too, and must stay as cheap as doit's own listing.


def say(text: str) -> None:
    sys.stderr.write(f"kiln: {text}\n")
    sys.stderr.flush()


class Session:
    def __init__(self, catalog: Catalog, options: Options) -> None:
        self.catalog = catalog
        self.options = options
        self.customer = catalog.customer(options.customer)
        self.state = catalog.state
        self.results = Results(self.state / "results.sqlite")
        self.statcache = StatCache(self.state / "statcache.marshal")
        self.selected: set[str] = set()  # the tasks doit was asked for (the reporter learns them)
        FAILURES.state = self.state
        FAILURES.by_task.clear()  # a new command line starts with none
        self.failures = FAILURES
        self.counts: Counter[str] = Counter()
        # Commands that read the database and local files only (why, images) take the vendor
        # image as last recorded instead of asking the cloud.
        self.offline = False
        self._lock = threading.RLock()
        self._provider: Any = None
        self._git: str | None = None
        self._warm: threading.Thread | None = None

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

    def job(self, key: ImageKey) -> Job:
        from tasks.build.spec import Job

        playbook, override = self.playbook(self.catalog.roles[key.role])
        debug = self.options.debug and self.named(key.role)
        return Job(forced=self.forced(key), playbook=playbook, override=override, debug=debug)

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

    # -- the stages' parts, made on first use -------------------------------------------------

    @property
    def provider(self) -> Any:
        with self._lock:
            if self._provider is None:
                from tasks.providers.factory import make_provider

                chosen = {d: self.catalog.distros[d] for d in self.options.distros}
                self._provider = make_provider(self.options.provider, self.catalog, self.customer, self.state, chosen)
            return self._provider

    @cached_property
    def ansible(self) -> AnsibleContent:
        """The catalog's Ansible content, each playbook scanned once per run (`doit list`
        compiles none of its patterns)."""
        from tasks.inputs.ansible_run import AnsibleContent

        return AnsibleContent(self.catalog.root, self.state, self.say)

    @cached_property
    def plays(self) -> Plays:
        from tasks.inputs.plays import Plays

        return Plays(self.ansible, self.catalog.root, self.state, self.say)

    @cached_property
    def plugins(self) -> Plugins:
        """packer/plugins.toml and the plugin sets `packer init` made ready in this run."""
        from tasks.build.packer_plugins import Plugins

        return Plugins(self.catalog.root, self.state, self.say)

    @cached_property
    def distribution(self) -> Distribution:
        from tasks.catalog.distribution import distribution

        return distribution(self.customer.conf, self.options.provider)

    @cached_property
    def fingerprints(self) -> Fingerprinter:
        from tasks.inputs.fingerprinter import Fingerprinter

        return Fingerprinter(
            self.catalog,
            self.customer,
            self.options.provider,
            self.statcache,
            lambda: self.ansible,
            self.rendered_path,
            self.playbook,
            self._origin,
            self._recorded_root,
        )

    def _origin(self, key: ImageKey) -> dict[str, str]:
        if not self.offline:
            return dict(self.provider.vendor_image(key.region, key.distro).identity())
        from tasks.records.current import recorded_vendor

        o = self.options
        return recorded_vendor(self.results, o.provider, o.customer, key.role, key.distro, key.region)

    def _recorded_root(self, key: ImageKey) -> str | None:
        """Only the cloud's tags are known (a synced database): trust the recorded root."""
        from tasks.records.current import current_row

        o = self.options
        row = current_row(self.results, o.provider, o.customer, key.role, key.distro, key.region)
        return None if row is None else str(row["fingerprint"])

    @cached_property
    def exports(self) -> Exports:
        from tasks.records.exports import Exports

        o = self.options
        patterns = self.customer.conf.get("exports", {}).get(o.provider) or {}
        roles = tuple(self.catalog.topological())
        return Exports(self.catalog.root, self.state, o.provider, o.customer, dict(patterns), roles)

    @cached_property
    def recorder(self) -> Recorder:
        from tasks.packer_bin import packer_version
        from tasks.records.recorder import Recorder

        return Recorder(
            self.results,
            self.exports,
            lambda: str(self.provider.account()),
            packer_version=packer_version,
            git_commit=self.git_commit,
        )

    @cached_property
    def index(self) -> CloudIndex:
        from tasks.decide import CloudIndex

        return CloudIndex(self.provider, self.results, self.options.provider)

    @cached_property
    def decider(self) -> Decider:
        from tasks.decide import Decider

        return Decider(self.index, self.recorder, self.distribution, self.say, self.counts)

    @cached_property
    def builder(self) -> Builder:
        from tasks.build.image_build import Builder

        o = self.options
        return Builder(
            catalog=self.catalog,
            customer=self.customer,
            state=self.state,
            provider_name=o.provider,
            regions=o.regions,
            distros=o.distros,
            copy=o.copy,
            provision=o.provision,
            provider=self.provider,
            fingerprints=self.fingerprints,
            index=self.index,
            decider=self.decider,
            recorder=self.recorder,
            results=self.results,
            distribution=self.distribution,
            plays=lambda: self.plays,
            plugins=lambda: self.plugins,
            say=self.say,
            counts=self.counts,
            checks_beside=self._checks_beside,
        )

    def _checks_beside(self, playbooks: list[str]) -> PendingChecks:
        from tasks.checks.beside import start

        return start(self.catalog, self.state, playbooks, self.plays.layout_env)

    # -- what image tasks and fleet commands ask ----------------------------------------------

    @staticmethod
    def say(text: str) -> None:
        say(text)

    def fingerprint(self, key: ImageKey) -> tuple[str, dict[str, Any]]:
        return self.fingerprints(key)

    def cloud_images(self, region: str) -> dict[str, list[CloudImage]]:
        return self.index(region)

    def is_current(self, key: ImageKey) -> bool:
        fp, manifest = self.fingerprints(key)  # first: a missing template is said even under force
        return self.decider.is_current(key, fp, manifest, self.forced(key))

    def build(self, key: ImageKey) -> None:
        self.builder.build(key, self.job(key))

    @property
    def build_ids(self) -> list[int]:
        return self.builder.build_ids if "builder" in self.__dict__ else []

    def git_commit(self) -> str | None:
        if self._git is None:
            proc = subprocess.run(
                ["git", "-C", str(self.catalog.root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
            )
            self._git = proc.stdout.strip() if proc.returncode == 0 else ""
        return self._git or None

    # -- the run's edges ----------------------------------------------------------------------

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

    def cloud_calls(self) -> list[str]:
        return list(self._provider.calls) if self._provider is not None else []


__all__ = ["KilnError", "Session"]
