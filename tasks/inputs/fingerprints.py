"""The manifest of an image's content inputs and its fingerprint (sha256 of the canonical JSON).

In: the rendered template, every file the play reads (tasks.inputs finds them as Ansible does),
the role's extra inputs,
the distro's and customer's content settings, the parent's fingerprint (or, for the root, the
vendor image's identity), the refresh period. Out: placement, credentials, kiln's own outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from tasks.catalog.load import Catalog, Customer, Role
from tasks.errors import KilnError
from tasks.inputs.ansible_run import AnsibleContent
from tasks.inputs.statcache import StatCache

# 2: Ansible-aware inputs (vars_files, includes, src:, lookups, collections, requirements).
MANIFEST_VERSION = 2
# Stored with the manifest to explain it, never hashed: why each file is an input, and the tool
# versions (teammates with another ansible-core must still find each other's images).
NOT_CONTENT = ("reasons", "tools")


def fingerprint_of(manifest: dict[str, Any]) -> str:
    content = {k: v for k, v in manifest.items() if k not in NOT_CONTENT}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@cache
def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("ansible-core", "ansible"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    return out


def period_start(days: int, now: float | None = None) -> str:
    seconds = days * 86400
    start = int((time.time() if now is None else now) // seconds) * seconds
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")


def input_files(
    catalog: Catalog, role: Role, playbook: str | None, ansible: AnsibleContent
) -> dict[str, tuple[Path, str]]:
    """Manifest name -> (file, why it is an input)."""
    files: dict[str, tuple[Path, str]] = {}
    if playbook is not None:
        play = ansible.play(playbook)
        for path, why in play.inputs.files.items():
            files.setdefault(play.key(path), (path, why))
        verify = role.verify_play(catalog.root)
        if verify is not None:  # the test is an input: a changed verify play re-verifies by rebuilding
            test = ansible.verify_play(verify, playbook)
            for path, why in test.inputs.files.items():
                files.setdefault(test.key(path), (path, f"verify play: {why}"))
    for pattern in role.inputs:
        matched = sorted(p for p in catalog.root.glob(pattern) if p.is_file())
        if not matched:
            raise KilnError(f"packer/{role.name}/role.toml: key 'inputs': {pattern!r} matches no file")
        for p in matched:
            files.setdefault(str(p.relative_to(catalog.root)), (p, f"inputs of packer/{role.name}/role.toml"))
    return dict(sorted(files.items()))


def content_manifest(
    catalog: Catalog,
    cache: StatCache,
    ansible: AnsibleContent,
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
    inputs = input_files(catalog, role, playbook, ansible)
    files = {name: cache.hash(path) for name, (path, _) in inputs.items()}
    manifest: dict[str, Any] = {
        "kiln": MANIFEST_VERSION,
        "provider": provider,
        "role": {"name": role.name, **role.conf.content()},
        "distro": {"name": distro, **catalog.distros[distro].conf.content()},
        "customer": {"name": customer.name, **customer.conf.content()},
        "template": cache.hash(rendered),
        "files": files,
        "reasons": {name: why for name, (_, why) in inputs.items()},
    }
    if playbook is not None:
        manifest["tools"] = {**tool_versions(), **ansible.play(playbook).inputs.tools}
    if playbook is not None and (verify := role.verify_play(catalog.root)) is not None:
        manifest["verify"] = verify
    if override and playbook is not None:
        manifest["playbook_override"] = playbook
    if role.parent is not None:
        manifest["parent"] = {"role": role.parent, "fingerprint": origin["parent_fingerprint"]}
    else:
        manifest["vendor_image"] = origin
    if role.refresh_days is not None:
        manifest["period"] = {"days": role.refresh_days, "start": period_start(role.refresh_days)}
    return manifest
