"""`doit diff <role> channel=NAME` (the channel's image against the current one) or
`image=A image2=B`: the packages added, removed and upgraded (name, old and new version), from
the stored CycloneDX documents, and the input files that differ, from the stored manifests.
Reads the state folder only; no cloud call."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from tasks.errors import KilnError, valid_list
from tasks.fleet.context import Context
from tasks.fleet.packages import no_inventory, place
from tasks.fleet.promote import check_channel, check_role, image_of_role
from tasks.records import channels
from tasks.records.current import current_row
from tasks.records.packages import components, stored

FORMATS = ("table", "json")


def _sides(run: Context, role: str, channel: str, image: str, image2: str) -> tuple[sqlite3.Row, sqlite3.Row, str]:
    o = run.options
    if channel and (image or image2):
        raise KilnError("variable channel: give channel=NAME or image=A image2=B, not both")
    if image or image2:
        if not (image and image2):
            raise KilnError("variable image2: name both images, e.g. image=ami-old image2=ami-new")
        return image_of_role(run, role, image), image_of_role(run, role, image2), f"{image} -> {image2}"
    if not channel:
        raise KilnError("variable channel: name a channel (channel=prod) or two images (image=A image2=B)")
    channel = check_channel(channel)
    distro, region = place(run)
    points = channels.current(run.results, o.provider, o.customer, role)
    at = points.get((role, distro, region, channel))
    if at is None:
        known = sorted({c for (_, d, r, c) in points if (d, r) == (distro, region)})
        raise KilnError(
            f"variable channel: role {role} has no channel '{channel}' in {distro}/{region}; channels: {valid_list(known)}"
        )
    old = image_of_role(run, role, at.image_id)
    new = current_row(run.results, o.provider, o.customer, role, distro, region)
    if new is None:
        raise KilnError(f"{role} ({distro}, {region}): no current image; build it first")
    return old, new, f"{channel} {at.image_id} -> current {new['image_id']}"


def package_changes(old: dict[str, str], new: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {
        "added": [{"name": n, "version": new[n]} for n in sorted(set(new) - set(old))],
        "removed": [{"name": n, "version": old[n]} for n in sorted(set(old) - set(new))],
        # Any version change, as dpkg and rpm would install it (a downgrade is rare and shown alike).
        "upgraded": [
            {"name": n, "old": old[n], "new": new[n]} for n in sorted(set(old) & set(new)) if old[n] != new[n]
        ],
    }


def input_changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, str]]:
    a, b = old.get("files", {}), new.get("files", {})
    out = [{"file": n, "change": "added"} for n in sorted(set(b) - set(a))]
    out += [{"file": n, "change": "removed"} for n in sorted(set(a) - set(b))]
    out += [{"file": n, "change": "changed"} for n in sorted(set(a) & set(b)) if a[n] != b[n]]
    if old.get("template") != new.get("template"):
        out.append({"file": "(rendered Packer template)", "change": "changed"})
    return sorted(out, key=lambda c: c["file"])


def diff_command(run: Context, pos: list[str], channel: str, image: str, image2: str, fmt: str) -> str:
    o = run.options
    role = check_role(run, "diff", pos)
    if fmt not in FORMATS:
        raise KilnError(f"variable format: {fmt!r} is not valid; valid: {', '.join(FORMATS)}")
    old, new, title = _sides(run, role, channel, image, image2)
    docs = [stored(run.results, o.provider, str(r["image_id"])) for r in (old, new)]
    for n, (row, doc) in enumerate(zip((old, new), docs, strict=True)):
        if doc is None and (n == 0 or row["image_id"] != old["image_id"]):
            run.say(f"warning: {no_inventory(run, row)}: its packages are not compared")
    before, after = docs
    changes = package_changes(components(before), components(after)) if before and after else None
    inputs = input_changes(json.loads(old["manifest"]), json.loads(new["manifest"]))
    if fmt == "json":
        out = {"role": role, "old": old["image_id"], "new": new["image_id"], "packages": changes, "inputs": inputs}
        return json.dumps(out, indent=2) + "\n"
    lines = [f"{role} ({new['distro']}, {new['region']}): {title}"]
    if changes is not None:
        counts = ", ".join(f"{len(v)} {k}" for k, v in changes.items())
        lines.append(f"packages: {counts}")
        lines += [f"  + {c['name']} {c['version']}" for c in changes["added"]]
        lines += [f"  - {c['name']} {c['version']}" for c in changes["removed"]]
        lines += [f"  ~ {c['name']} {c['old']} -> {c['new']}" for c in changes["upgraded"]]
    lines.append(f"inputs: {len(inputs)} differ")
    lines += [f"  {c['change']} {c['file']}" for c in inputs]
    return "\n".join(lines) + "\n"
