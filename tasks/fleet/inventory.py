"""The current image per role, distro and region from the results database, with its age and
whether it is up to date: what `doit images` shows and what the exports are written from."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tasks.errors import KilnError
from tasks.fleet.sharing import shared_with, short
from tasks.models import ImageKey
from tasks.records.current import current_row, revoked_below

if TYPE_CHECKING:
    from tasks.fleet.context import Context


@dataclass(frozen=True)
class Entry:
    role: str
    distro: str
    region: str
    customer: str
    provider: str
    image_id: str
    origin: str
    created_at: str
    status: str  # up to date | stale | revoked | parent revoked | missing
    fingerprint: str
    row: sqlite3.Row | None
    shared_with: tuple[str, ...] = ()  # accounts, organization and OU ARNs, as last applied
    # What it keeps (GiB of volumes and snapshots) and the instance time of the build that made it.
    size: str = "-"
    build: str = "-"
    # The role's verify play on it: passed | unverified (no machine ran it) | failed | - (none)
    verified: str = "-"
    channels: tuple[str, ...] = ()  # the channels that point at it in its region

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "distro": self.distro,
            "region": self.region,
            "customer": self.customer,
            "provider": self.provider,
            "image_id": self.image_id,
            "origin": self.origin,
            "created_at": self.created_at,
            "age": age(self.created_at),
            "status": self.status,
            "shared_with": list(self.shared_with),
            "size": self.size,
            "build": self.build,
            "verified": self.verified,
            "channels": list(self.channels),
        }


def age(created: str) -> str:
    if not created:
        return "-"
    try:
        then = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def status_of(run: Context, role: str, distro: str, region: str) -> tuple[sqlite3.Row | None, str, str]:
    """(current row, status, wanted fingerprint)."""
    o = run.options
    row = current_row(run.results, o.provider, o.customer, role, distro, region)
    wanted = run.fingerprint(ImageKey(role, distro, region))[0]
    if row is None:
        return None, "missing", wanted
    if row["state"] == "revoked":
        return row, "revoked", wanted
    if revoked_below(run.results, row):
        return row, "parent revoked", wanted
    return row, "up to date" if row["fingerprint"] == wanted else "stale", wanted


def scope(run: Context) -> tuple[list[str], list[str], list[str]]:
    """Roles, distros and regions to show: those named on the command line, else every one the
    database holds for this provider and customer."""
    import doit.doit_cmd

    o = run.options
    named = dict(doit.doit_cmd._CMDLINE_VARS or {})
    roles = list(run.catalog.topological())
    if named.get("role"):
        wanted = [r.strip() for r in named["role"].split(",")]
        for r in wanted:
            if r not in run.catalog.roles:
                raise KilnError(f"variable role: unknown role '{r}'; valid: {', '.join(sorted(run.catalog.roles))}")
        roles = [r for r in roles if r in wanted]
    recorded = run.results.read(
        "SELECT DISTINCT distro, region FROM images WHERE provider=? AND customer=?", (o.provider, o.customer)
    )
    distros = list(o.distros) if "distro" in named else sorted({r["distro"] for r in recorded}) or list(o.distros)
    regions = list(o.regions) if "region" in named else sorted({r["region"] for r in recorded}) or list(o.regions)
    return roles, distros, regions


def inventory(run: Context, roles: list[str], distros: list[str], regions: list[str]) -> list[Entry]:
    o = run.options
    out: list[Entry] = []
    shares = shared_with(run, o.provider)
    for distro in distros:
        for region in regions:
            for role in roles:
                row, status, wanted = status_of(run, role, distro, region)
                out.append(
                    Entry(
                        role=role,
                        distro=distro,
                        region=region,
                        customer=o.customer,
                        provider=o.provider,
                        image_id=row["image_id"] if row else "-",
                        origin=row["origin"] if row else "-",
                        created_at=row["created_at"] if row else "",
                        status=status,
                        fingerprint=wanted,
                        row=row,
                        shared_with=tuple(shares.get((row["account"], region, row["image_id"]), ()) if row else ()),
                        verified=str(row["verified"] or "-") if row else "-",
                    )
                )
    from dataclasses import replace

    from tasks.records.channels import pointing_at
    from tasks.records.costs import image_costs

    on = pointing_at(run.results, o.provider, o.customer)
    out = [replace(e, channels=tuple(sorted(on.get((e.region, e.image_id), [])))) for e in out]

    costs = image_costs(run.results, [e.image_id for e in out if e.image_id != "-"])
    return [
        replace(e, size=costs[e.image_id][0], build=costs[e.image_id][1]) if e.image_id in costs else e for e in out
    ]


def render(entries: list[Entry], fmt: str) -> str:
    rows = [e.as_dict() for e in entries if e.image_id != "-" or fmt == "table"]
    if fmt == "json":
        return json.dumps({"images": rows}, indent=2) + "\n"
    if fmt == "toml":
        import tomli_w

        return tomli_w.dumps({"images": rows})
    if fmt == "properties":
        places = {(e.distro, e.region) for e in entries}
        if len(places) == 1:
            return "".join(f"{r['role']}={r['image_id']}\n" for r in rows)
        return "".join(f"{r['distro']}.{r['region']}.{r['role']}={r['image_id']}\n" for r in rows)
    columns = (
        "role",
        "distro",
        "region",
        "customer",
        "provider",
        "image_id",
        "origin",
        "age",
        "verified",
        "channels",
        "shared",
        "status",
        "size",
        "build",
    )

    def cell(e: Entry, c: str) -> str:
        if c == "shared":  # with whom: account ids, o-... and ou-... for organizations and OUs
            return ",".join(short(v) for v in e.shared_with) or "-"
        if c == "channels":
            return ",".join(e.channels) or "-"
        return str(e.as_dict()[c])

    table = [columns] + [tuple(cell(e, c) for c in columns) for e in entries]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in table)


FORMATS = ("table", "json", "toml", "properties")


def images_command(run: Context, fmt: str) -> str:
    if fmt not in FORMATS:
        raise KilnError(f"variable format: {fmt!r} is not valid; valid: {', '.join(FORMATS)}")
    run.offline = True
    entries = inventory(run, *scope(run))
    _say_totals(run, entries)
    return render(entries, fmt)


def _say_totals(run: Context, entries: list[Entry]) -> None:
    """What the images shown keep and what building them took, on stderr (stdout is the document)."""
    import sys

    ids = [e.image_id for e in entries if e.row is not None]
    if not ids:
        return
    marks = ",".join("?" * len(ids))
    sizes = run.results.read(
        f"SELECT sum(volume_gb) AS gb, sum(snapshots) AS snaps, count(volume_gb) AS known FROM images"
        f" WHERE image_id IN ({marks})",
        tuple(ids),
    )[0]
    seconds = run.results.read(
        f"SELECT sum(seconds) AS s FROM builds WHERE status='ok' AND image_id IN ({marks})", tuple(ids)
    )[0]["s"]
    unknown = len(ids) - int(sizes["known"] or 0)
    text = f"{len(ids)} images keep {int(sizes['gb'] or 0)} GB of volumes in {int(sizes['snaps'] or 0)} snapshots"
    text += f" ({unknown} of unknown size)" if unknown else ""
    if seconds:
        text += f"; the builds that made them took {float(seconds) / 3600:.3f} instance-hours (copies took none)"
    sys.stderr.write(f"kiln: images: {text}; EBS snapshots are incremental, so they hold at most this\n")
