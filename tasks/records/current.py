"""Which recorded image the catalog uses now, per role, distro and region: what `doit images`,
`why`, the exports and prune read."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from tasks.records.results import Results


def current_row(
    results: Results, provider: str, customer: str, role: str, distro: str, region: str
) -> sqlite3.Row | None:
    """The image the catalog uses now: the newest mainline one that was not lost."""
    rows = results.read(
        "SELECT * FROM images WHERE provider=? AND customer=? AND distro=? AND region=? AND role=?"
        " AND state IN ('available', 'revoked') AND playbook_override IS NULL ORDER BY created_at DESC, id DESC LIMIT 1",
        (provider, customer, distro, region, role),
    )
    return rows[0] if rows else None


def revoked_below(results: Results, row: sqlite3.Row) -> str | None:
    """The revoked ancestor this image was built on, if any (by recorded parent image ids)."""
    seen: set[str] = set()
    parent = row["parent_image"]
    while parent and parent not in seen:
        seen.add(parent)
        found = results.by_image(parent)
        if not found:
            return None
        if any(r["state"] == "revoked" for r in found):
            return str(parent)
        parent = found[-1]["parent_image"]
    return None


def mainline(
    results: Results, provider: str, customer: str, roles: Iterable[str], distro: str, region: str
) -> dict[str, str]:
    """role -> current usable image id, for the exports (revoked and missing left out)."""
    out: dict[str, str] = {}
    for role in roles:
        row = current_row(results, provider, customer, role, distro, region)
        if row is not None and row["state"] == "available":
            out[role] = str(row["image_id"])
    return out


def recorded_vendor(
    results: Results, provider: str, customer: str, role: str, distro: str, region: str
) -> dict[str, str]:
    """The vendor image a root was last built from, as recorded (commands that ask no cloud)."""
    import json

    rows = results.read(
        "SELECT manifest FROM images WHERE provider=? AND customer=? AND distro=? AND region=? AND role=?"
        " AND manifest LIKE '%vendor_image%' ORDER BY created_at DESC, id DESC LIMIT 1",
        (provider, customer, distro, region, role),
    )
    if not rows:
        return {}
    vendor: dict[str, str] = json.loads(rows[0]["manifest"])["vendor_image"]
    return vendor
