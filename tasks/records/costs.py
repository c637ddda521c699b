"""What a catalog costs, from kiln's own records: the instance time of each build (Packer's wall
time on its instance type, from the build rows) and the volumes each image keeps (its snapshots).

No price list: prices differ by region, contract and date; instance-hours per type and GiB of
snapshots are what a bill is made of, and what a team can multiply by its own prices.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.records.results import Results


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def on(row: Any) -> str:
    """What a build ran on, as the cost line says it: 't3.small', 'spot t3.small, t3a.small',
    't3.small (on demand: no spot capacity)'."""
    kind = row["capacity"] or "on-demand"
    types = row["instance_type"] or "?"
    if kind == "spot":
        return f"spot {types}"
    return f"{types} (on demand: no spot capacity)" if "spot" in kind else types


def build_lines(results: Results, build_ids: list[int]) -> list[str]:
    """One line per build of this run, and the total per instance type."""
    if not build_ids:
        return []
    marks = ",".join("?" * len(build_ids))
    rows = results.read(
        f"SELECT * FROM builds WHERE id IN ({marks}) AND seconds IS NOT NULL ORDER BY id", tuple(build_ids)
    )
    if not rows:
        return []
    lines = []
    per_type: dict[str, float] = defaultdict(float)
    for row in rows:
        seconds = float(row["seconds"])
        label = f"{row['role']}/{row['distro']}/{row['region']}"
        state = "" if row["status"] == "ok" else f" ({row['status']})"
        lines.append(f"instance time: {label}: {duration(seconds)} on {on(row)}{state}")
        per_type[on(row)] += seconds
    total = sum(per_type.values())
    by_type = ", ".join(f"{duration(s)} on {t}" for t, s in sorted(per_type.items()))
    builds = f"{len(rows)} build{'' if len(rows) == 1 else 's'}"
    lines.append(f"instance time: {builds}, {total / 3600:.3f} instance-hours ({by_type}); copies use none")
    return lines


def image_costs(results: Results, image_ids: list[str]) -> dict[str, tuple[str, str]]:
    """image id -> (GiB and snapshots it keeps, instance time of the build that made it)."""
    if not image_ids:
        return {}
    marks = ",".join("?" * len(image_ids))
    sizes = {
        r["image_id"]: r
        for r in results.read(
            f"SELECT image_id, volume_gb, snapshots FROM images WHERE image_id IN ({marks})", tuple(image_ids)
        )
    }
    builds = {
        r["image_id"]: r
        for r in results.read(
            f"SELECT image_id, seconds, instance_type, capacity FROM builds WHERE status='ok' AND image_id IN ({marks})",
            tuple(image_ids),
        )
    }
    out = {}
    for image in image_ids:
        size = sizes.get(image)
        gb = "-"
        if size is not None and size["volume_gb"] is not None:
            gb = f"{size['volume_gb']} GB/{size['snapshots'] or 0} snap"
        build = builds.get(image)
        made = "-" if build is None or build["seconds"] is None else f"{duration(float(build['seconds']))} {on(build)}"
        out[image] = (gb, made)
    return out
