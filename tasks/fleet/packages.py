"""`doit packages <role>`: the current image's package inventory (CycloneDX JSON) on stdout,
from the state folder; no cloud call."""

from __future__ import annotations

import sqlite3

from tasks.errors import KilnError
from tasks.fleet.context import Context
from tasks.fleet.promote import check_role
from tasks.records.current import current_row
from tasks.records.packages import stored


def place(run: Context) -> tuple[str, str]:
    """The one distro and region a document command looks at: the first named (or the customer's
    first), said on stderr when there were more."""
    o = run.options
    distro, region = o.distros[0], o.regions[0]
    if len(o.distros) > 1 or len(o.regions) > 1:
        run.say(f"showing {distro} in {region}; name distro= and region= for another")
    return distro, region


def no_inventory(run: Context, row: sqlite3.Row) -> str:
    why = (
        "the sandbox ran no machine for it (build with provision=1)"
        if run.options.provider == "sandbox"
        else "it was made before kiln kept inventories (force=1 rebuilds it)"
    )
    return f"{row['image_id']} ({row['role']}, {row['distro']}, {row['region']}) has no package inventory: {why}"


def packages_command(run: Context, pos: list[str]) -> str:
    o = run.options
    role = check_role(run, "packages", pos)
    distro, region = place(run)
    row = current_row(run.results, o.provider, o.customer, role, distro, region)
    if row is None:
        raise KilnError(
            f"{role} ({distro}, {region}): no current image; build it first: doit {role} provider={o.provider}"
        )
    path = stored(run.results, o.provider, str(row["image_id"]))
    if path is None:
        raise KilnError(no_inventory(run, row))
    return path.read_text()
