"""The manifest of an image's content inputs and its fingerprint (sha256 of the canonical JSON).

In: the rendered template, every file of the playbook and its roles, the role's extra inputs,
the distro's and customer's content settings, the parent's fingerprint (or, for the root, the
vendor image's identity), the refresh period. Out: placement, credentials, kiln's own outputs.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .catalog import Catalog, Customer, Role
from .errors import KilnError
from .playbook import playbook_files
from .statcache import StatCache

MANIFEST_VERSION = 1


def fingerprint_of(manifest: dict[str, Any]) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def period_start(days: int, now: float | None = None) -> str:
    seconds = days * 86400
    start = int((time.time() if now is None else now) // seconds) * seconds
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")


def input_files(catalog: Catalog, role: Role, playbook: str | None) -> list[Path]:
    files: set[Path] = set()
    if playbook is not None:
        files.update(playbook_files(catalog.root, playbook))
    for pattern in role.inputs:
        matched = [p for p in catalog.root.glob(pattern) if p.is_file()]
        if not matched:
            raise KilnError(f"packer/{role.name}/role.toml: key 'inputs': {pattern!r} matches no file")
        files.update(matched)
    return sorted(files)


def content_manifest(
    catalog: Catalog,
    cache: StatCache,
    *,
    role: Role,
    distro: str,
    customer: Customer,
    provider: str,
    rendered: Path,
    playbook: str | None,
    override: bool,
    origin: dict[str, str],
) -> dict[str, Any]:
    """origin: {'parent_fingerprint': ...} or the vendor image's identity for the root."""
    files = {str(p.relative_to(catalog.root)): cache.hash(p) for p in input_files(catalog, role, playbook)}
    manifest: dict[str, Any] = {
        "kiln": MANIFEST_VERSION,
        "provider": provider,
        "role": {"name": role.name, **role.conf.content()},
        "distro": {"name": distro, **catalog.distros[distro].conf.content()},
        "customer": {"name": customer.name, **customer.conf.content()},
        "template": cache.hash(rendered),
        "files": files,
    }
    if override and playbook is not None:
        manifest["playbook_override"] = playbook
    if role.parent is not None:
        manifest["parent"] = {"role": role.parent, "fingerprint": origin["parent_fingerprint"]}
    else:
        manifest["vendor_image"] = origin
    if role.refresh_days is not None:
        manifest["period"] = {"days": role.refresh_days, "start": period_start(role.refresh_days)}
    return manifest
