"""Each image's fingerprint and manifest, computed once per run: the rendered template, the
role's inputs and the origin (the parent's fingerprint, or the vendor image for a root)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.catalog.load import Catalog, Customer, Role
from tasks.errors import KilnError
from tasks.inputs.statcache import StatCache
from tasks.models import ImageKey

if TYPE_CHECKING:
    from tasks.inputs.ansible_run import AnsibleContent

Manifested = tuple[str, dict[str, Any]]


class Fingerprinter:
    def __init__(
        self,
        catalog: Catalog,
        customer: Customer,
        provider: str,
        statcache: StatCache,
        ansible: Callable[[], AnsibleContent],
        rendered_path: Callable[[str, str], Path],
        playbook: Callable[[Role], tuple[str | None, bool]],
        origin: Callable[[ImageKey], dict[str, str]],
        recorded: Callable[[ImageKey], str | None],
    ) -> None:
        """origin: the vendor image's identity for a root; recorded: a root's last recorded
        fingerprint, used when the origin is unknown (commands that ask no cloud)."""
        self.catalog = catalog
        self.customer = customer
        self.provider = provider
        self.statcache = statcache
        self._ansible = ansible
        self._rendered_path = rendered_path
        self._playbook = playbook
        self._origin = origin
        self._recorded = recorded
        self._done: dict[ImageKey, Manifested] = {}
        self._lock = threading.RLock()

    def __call__(self, key: ImageKey) -> Manifested:
        with self._lock:
            if key in self._done:
                return self._done[key]
        role = self.catalog.roles[key.role]
        if role.parent is not None:
            origin = {"parent_fingerprint": self(ImageKey(role.parent, key.distro, key.region))[0]}
        else:
            origin = self._origin(key)
            if not origin and (known := self._recorded(key)) is not None:
                return known, {}
        playbook, override = self._playbook(role)
        rendered = self._rendered_path(key.role, key.distro)
        if not rendered.exists():
            raise KilnError(f"{rendered}: rendered template missing; run the whole task, not the image alone")
        from tasks.inputs.fingerprints import content_manifest, fingerprint_of

        manifest = content_manifest(
            self.catalog,
            self.statcache,
            self._ansible(),
            role=role,
            distro=key.distro,
            customer=self.customer,
            provider=self.provider,
            rendered=rendered,
            playbook=playbook,
            override=override,
            origin=origin,
        )
        self.statcache.save()
        result = (fingerprint_of(manifest), manifest)
        with self._lock:
            self._done[key] = result
        return result
