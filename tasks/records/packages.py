"""Each image's package inventory as a CycloneDX 1.5 JSON document: from the layer's dpkg status
file on provider=local, or from what a Packer build's shell provisioner listed on the machine
(dpkg-query or rpm, tab-separated) and its file provisioner downloaded. Stored in the state
folder as packages/<image-id>.cdx.json and recorded in the results database; a copy or an
adoption of the same content (fingerprint) shares its source's document."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tasks.records.results import Results, now

# What the Packer template's shell provisioner writes, one package a line:
# name <TAB> version <TAB> architecture <TAB> kind (deb | rpm)
LISTING = "packages.tsv"


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    arch: str
    kind: str = "deb"  # deb | rpm


def from_dpkg_status(text: str) -> list[Package]:
    """Installed packages of a dpkg status file (the tree's /var/lib/dpkg/status): read directly,
    so no dpkg runs inside or outside the tree."""
    out: list[Package] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            out.append(Package(fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")))
    return sorted(set(out))


def from_listing(text: str) -> list[Package]:
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 4 and parts[0]:
            out.append(Package(parts[0], parts[1], parts[2], parts[3] or "deb"))
    return sorted(set(out))


def purl(p: Package, namespace: str) -> str:
    """pkg:deb/debian/NAME@VERSION?arch=ARCH (the version percent-encoded: epochs have ':')."""
    version = quote(p.version, safe="")
    arch = f"?arch={quote(p.arch, safe='')}" if p.arch else ""
    return f"pkg:{p.kind}/{namespace}/{quote(p.name, safe='')}@{version}{arch}"


def document(packages: list[Package], image_id: str, role: str, distro: str) -> dict[str, object]:
    namespace = distro.split("-", 1)[0]  # debian-12 -> debian, ubuntu-22.04 -> ubuntu
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": now(),
            "tools": {"components": [{"type": "application", "name": "kiln"}]},
            "component": {
                "type": "operating-system",
                "bom-ref": image_id,
                "name": f"{role}-{distro}",
                "version": image_id,
            },
        },
        "components": [
            {"type": "library", "bom-ref": purl(p, namespace), "name": p.name, "version": p.version, "purl": purl(p, namespace)}
            for p in packages
        ],
    }  # fmt: skip


def path_for(state: Path, image_id: str) -> Path:
    return state / "packages" / f"{image_id}.cdx.json"


def store(
    results: Results, state: Path, provider: str, image_id: str, role: str, distro: str, packages: list[Package]
) -> Path:
    path = path_for(state, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document(packages, image_id, role, distro), indent=1) + "\n")
    tmp.replace(path)
    with results.write() as con:
        con.execute(
            "INSERT OR REPLACE INTO packages (provider, image_id, path, count, at) VALUES (?, ?, ?, ?, ?)",
            (provider, image_id, str(path), len(packages), now()),
        )
    return path


def stored(results: Results, provider: str, image_id: str) -> Path | None:
    """The image's document, or that of another image of the same content (its copy's source)."""
    rows = results.read("SELECT path FROM packages WHERE provider=? AND image_id=?", (provider, image_id))
    if not rows:
        rows = results.read(
            "SELECT p.path FROM packages p JOIN images a ON a.image_id = p.image_id AND a.provider = p.provider"
            " JOIN images b ON b.fingerprint = a.fingerprint AND b.provider = a.provider"
            " WHERE b.provider=? AND b.image_id=? ORDER BY p.at DESC LIMIT 1",
            (provider, image_id),
        )
    for row in rows:
        path = Path(row["path"])
        if path.is_file():
            return path
    return None


def components(path: Path) -> dict[str, str]:
    """name -> version of a stored document."""
    doc = json.loads(path.read_text())
    return {str(c["name"]): str(c.get("version", "")) for c in doc.get("components", [])}
