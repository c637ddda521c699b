"""Files downstream tools read: `<role>=<image-id>` properties (the legacy format), TOML, JSON.

Where they go is the customer's choice per provider (customer.toml [exports.<provider>]);
sandbox and local exports stay in the state folder so a demo never overwrites real ids.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from tasks.errors import KilnError
from tasks.file_lock import file_lock
from tasks.records.current import mainline
from tasks.records.results import Results

_lock = threading.Lock()


def render_export(kind: str, images: dict[str, str], header: str) -> str:
    if kind == "properties":
        return f"# {header}\n" + "".join(f"{role}={image}\n" for role, image in images.items())
    if kind == "toml":
        return f"# {header}\n" + tomli_w.dumps({"images": images})
    return json.dumps({"images": images}, indent=2) + "\n"


@dataclass(frozen=True)
class Exports:
    """Where one provider's and customer's exports go (customer.toml [exports.<provider>])."""

    root: Path
    state: Path
    provider: str
    customer: str
    patterns: dict[str, str]
    roles: tuple[str, ...]  # parents first, as the files list them

    @property
    def endpoint_override(self) -> str:
        """provider=aws pointed at another endpoint (an emulator, a test): its ids are not real."""
        if self.provider != "aws":
            return ""
        return os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL") or ""

    def paths(self, distro: str, region: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        # Ids from an overridden endpoint never reach the tracked tree: the same files are written
        # under the state folder instead (a demo or test against moto once committed a fake id).
        redirect = self.state / "exports" / "endpoint-override" if self.endpoint_override else None
        for kind, pattern in self.patterns.items():
            if not pattern:
                continue
            try:
                text = pattern.format(state=self.state, distro=distro, region=region, customer=self.customer)
            except (KeyError, IndexError) as err:
                raise KilnError(
                    f"customers/{self.customer}/customer.toml: exports.{self.provider}.{kind}: unknown"
                    f" placeholder {err}; valid: {{state}}, {{distro}}, {{region}}, {{customer}}"
                ) from None
            path = self.root / text
            if redirect is not None and not path.is_relative_to(self.state):
                path = (
                    redirect / path.relative_to(self.root) if path.is_relative_to(self.root) else redirect / path.name
                )
            out[kind] = path
        return out

    def write(self, results: Results, distro: str, region: str) -> None:
        paths = self.paths(distro, region)
        if not paths:
            return
        header = f"written by kiln for {self.customer}/{distro}/{region} ({self.provider}); do not edit"
        # Read and write under one lock across processes: two runs at once must not write an
        # export from a database read that misses the other's image.
        with _lock, file_lock(self.state / "locks" / "exports.lock"):
            images = mainline(results, self.provider, self.customer, self.roles, distro, region)
            for kind, path in paths.items():
                text = render_export(kind, images, header)
                if path.exists() and path.read_text() == text:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(text)
                tmp.replace(path)
