"""`doit channels [role=...] [format=json]`: every channel assignment, oldest first, with the
ones in force marked; from the results database only (no cloud call)."""

from __future__ import annotations

import json

from tasks.errors import KilnError, valid_list
from tasks.fleet.context import Context
from tasks.records import channels

FORMATS = ("table", "json")


def channels_command(run: Context, role: str, fmt: str) -> str:
    o = run.options
    if role and role not in run.catalog.roles:
        raise KilnError(f"variable role: unknown role '{role}'; valid: {valid_list(run.catalog.roles)}")
    if fmt not in FORMATS:
        raise KilnError(f"variable format: {fmt!r} is not valid; valid: {', '.join(FORMATS)}")
    every = channels.history(run.results, o.provider, o.customer, role or None)
    newest = {(a.role, a.distro, a.region, a.channel): n for n, a in enumerate(every)}
    live = set(newest.values())
    rows = [
        {
            "role": a.role,
            "distro": a.distro,
            "region": a.region,
            "channel": a.channel,
            "image_id": a.image_id,
            "previous_image": a.previous_image or "-",
            "who": a.who,
            "at": a.at,
            "current": n in live,
            "parameter": a.parameter or "-",
        }
        for n, a in enumerate(every)
    ]
    if fmt == "json":
        return json.dumps({"channels": rows}, indent=2) + "\n"
    if not rows:
        return "no channel assignments yet; doit promote <role> channel=NAME makes one\n"
    columns = ("role", "distro", "region", "channel", "image_id", "previous_image", "who", "at", "current")
    table = [columns] + [
        tuple("*" if c == "current" and r[c] else "" if c == "current" else str(r[c]) for c in columns) for r in rows
    ]
    widths = [max(len(t[i]) for t in table) for i in range(len(columns))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip() + "\n" for t in table)
