"""Files downstream tools read: `<role>=<image-id>` properties (the legacy format), TOML, JSON.

Where they go is the customer's choice per provider (customer.toml [exports.<provider>]);
sandbox and local exports stay in the state folder so a demo never overwrites real ids.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from tasks.build.locks import file_lock
from tasks.errors import KilnError

if TYPE_CHECKING:
    from tasks.cli.session import Run

_lock = threading.Lock()


def render_export(kind: str, images: dict[str, str], header: str) -> str:
    if kind == "properties":
        return f"# {header}\n" + "".join(f"{role}={image}\n" for role, image in images.items())
    if kind == "toml":
        return f"# {header}\n" + tomli_w.dumps({"images": images})
    return json.dumps({"images": images}, indent=2) + "\n"


def endpoint_override(run: Run) -> str:
    """provider=aws pointed at another endpoint (an emulator, a test): its ids are not real."""
    if run.options.provider != "aws":
        return ""
    return os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL") or ""


def export_paths(run: Run, distro: str, region: str) -> dict[str, Path]:
    exports: dict[str, Any] = run.customer.conf.get("exports", {}).get(run.options.provider) or {}
    out: dict[str, Path] = {}
    # Ids from an overridden endpoint never reach the tracked tree: the same files are written
    # under the state folder instead (a demo or test against moto once committed a fake id).
    redirect = run.state / "exports" / "endpoint-override" if endpoint_override(run) else None
    for kind, pattern in exports.items():
        if not pattern:
            continue
        try:
            text = pattern.format(state=run.state, distro=distro, region=region, customer=run.options.customer)
        except (KeyError, IndexError) as err:
            raise KilnError(
                f"customers/{run.options.customer}/customer.toml: exports.{run.options.provider}.{kind}: unknown"
                f" placeholder {err}; valid: {{state}}, {{distro}}, {{region}}, {{customer}}"
            ) from None
        path = run.catalog.root / text
        if redirect is not None and not path.is_relative_to(run.state):
            path = redirect / path.relative_to(run.catalog.root) if path.is_relative_to(run.catalog.root) else redirect / path.name
        out[kind] = path
    return out


def write_exports(run: Run, distro: str, region: str) -> None:
    paths = export_paths(run, distro, region)
    if not paths:
        return
    header = f"written by kiln for {run.options.customer}/{distro}/{region} ({run.options.provider}); do not edit"
    # Read and write under one lock across processes: two runs at once must not write an
    # export from a database read that misses the other's image.
    with _lock, file_lock(run.state / "locks" / "exports.lock"):
        from tasks.fleet.inventory import mainline

        images = mainline(run, distro, region)
        for kind, path in paths.items():
            text = render_export(kind, images, header)
            if path.exists() and path.read_text() == text:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
