"""`doit promote <role> channel=NAME [image=ID] [region=...] [force=1]`: point a channel at the
role's current image (or the one named: a rollback) in each region and distro. Everything is
checked for every place before the first write, so a mistake changes nothing. On AWS and the
sandbox the channel is also an SSM parameter per region (one call per place)."""

from __future__ import annotations

import sqlite3

from tasks.errors import KilnError, valid_list
from tasks.fleet.context import Context
from tasks.records import channels
from tasks.records.current import current_row


def check_role(run: Context, command: str, pos: list[str]) -> str:
    if len(pos) != 1 or pos[0] not in run.catalog.roles:
        shown = f"'{pos[0]}' is not a role" if len(pos) == 1 else "name one role"
        raise KilnError(f"doit {command}: {shown}, e.g. doit {command} core; roles: {valid_list(run.catalog.roles)}")
    return pos[0]


def check_channel(name: str) -> str:
    if not name:
        raise KilnError("variable channel: name the channel, e.g. channel=prod")
    if not channels.valid_channel(name):
        raise KilnError(
            f"variable channel: {name!r} is not a valid channel name; use lower-case letters, digits, '.', '_', '-'"
        )
    return name


def image_of_role(run: Context, role: str, image_id: str) -> sqlite3.Row:
    """The recorded row of image=ID, which must be one of this role's on this provider."""
    rows = [r for r in run.results.by_image(image_id) if r["provider"] == run.options.provider]
    if not rows:
        raise KilnError(
            f"variable image: {image_id} is not a {run.options.provider} image in kiln's results database;"
            f" doit images role={role} lists them"
        )
    row = rows[-1]
    if row["role"] != role:
        raise KilnError(f"variable image: {image_id} is an image of role {row['role']}, not {role}")
    return row


def _same_content_here(run: Context, named: sqlite3.Row, distro: str, region: str) -> sqlite3.Row | None:
    """The named image itself in its region, else the same bits here: its copy (or its copy's
    source, or a sibling copy), else the newest image of the same fingerprint (force=1 rebuilds
    share one, so the copy lineage is asked first)."""
    if named["region"] == region and named["distro"] == distro:
        return named
    o = run.options
    base = "SELECT * FROM images WHERE provider=? AND customer=? AND role=? AND distro=? AND region=?"
    place = (o.provider, o.customer, named["role"], distro, region)
    kin = [str(named["image_id"]), *([str(named["source_image"])] if named["origin"] == "copied" else [])]
    marks = ",".join("?" * len(kin))
    rows = run.results.read(
        f"{base} AND state IN ('available', 'revoked') AND (image_id IN ({marks})"
        f" OR (origin='copied' AND source_image IN ({marks}))) ORDER BY id DESC LIMIT 1",
        (*place, *kin, *kin),
    )
    if not rows:
        rows = run.results.read(
            f"{base} AND fingerprint=? AND state IN ('available', 'revoked') ORDER BY created_at DESC, id DESC LIMIT 1",
            (*place, named["fingerprint"]),
        )
    return rows[0] if rows else None


def promote_command(run: Context, pos: list[str], channel: str, image: str) -> str:
    o = run.options
    role = check_role(run, "promote", pos)
    channel = check_channel(channel)
    forced = o.force == "1"
    named = image_of_role(run, role, image) if image else None
    points = channels.current(run.results, o.provider, o.customer, role)
    plan: list[tuple[str, str, sqlite3.Row, channels.Assignment | None]] = []
    for distro in o.distros:
        for region in o.regions:
            label = f"{role} ({distro}, {region})"
            if named is not None:
                row = _same_content_here(run, named, distro, region)
                if row is None:
                    raise KilnError(
                        f"variable image: {image} has no copy in {region} ({distro}); name that region's image"
                        f" or region={named['region']}"
                    )
            else:
                row = current_row(run.results, o.provider, o.customer, role, distro, region)
                if row is None:
                    raise KilnError(f"{label}: no image to promote; build it first: doit {role} provider={o.provider}")
            if row["state"] == "revoked":
                raise KilnError(f"variable image: {row['image_id']} ({label}) is revoked; it cannot be promoted")
            verified = row["verified"]
            if verified in ("unverified", "failed") and not forced:
                raise KilnError(
                    f"variable image: {row['image_id']} ({label}) is {verified} by its verify play;"
                    " verify it (doit verify, or build with provision=1) or promote with force=1"
                )
            plan.append((distro, region, row, points.get((role, distro, region, channel))))
    store = run.provider if o.provider in ("aws", "sandbox") else None
    lines = []
    by = channels.who()
    for distro, region, row, before in plan:
        image_id = str(row["image_id"])
        label = f"{role} ({distro}, {region})"
        if before is not None and before.image_id == image_id:
            lines.append(f"{label}: {channel} already points at {image_id}\n")
            continue
        name = channels.parameter_name(o.customer, distro, role, channel)
        if store is not None:
            store.put_channel(region, name, image_id, f"kiln channel {channel} of {role} ({distro}), set by {by}")
        previous = before.image_id if before else None
        at = channels.now()
        a = channels.Assignment(distro, region, role, channel, image_id, previous, by, at, name if store else None)
        channels.record(run.results, o.provider, o.customer, a)
        was = f" (was {previous})" if previous else ""
        where = f"; SSM {name}" if store else ""
        forced_note = f" [force=1: {row['verified']}]" if forced and row["verified"] in ("unverified", "failed") else ""
        lines.append(f"{label}: {channel} -> {image_id}{was}{where}{forced_note}\n")
    if store is not None:  # one PutParameter per place changed, nothing else
        run.say(f"promote: {len(getattr(store, 'calls', []))} cloud calls")
    return "".join(lines)
