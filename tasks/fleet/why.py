"""`doit why <role>`: is the image up to date, and if not, what changed since the current one.

A diff of two manifests: the one stored with the current image and the one the catalog gives
now. Reads the database and local files only (the vendor image as last recorded), builds nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tasks.errors import KilnError
from tasks.fleet.inventory import age, scope, status_of
from tasks.records.current import revoked_below

if TYPE_CHECKING:
    from tasks.fleet.context import Context


def _settings(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"setting  {kind}.{key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    return out


def manifest_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per change, most telling first: files, template, settings, parent, vendor, period."""
    lines: list[str] = []
    old_files, new_files = old.get("files", {}), new.get("files", {})
    for path in sorted(set(old_files) | set(new_files)):
        if path not in old_files:
            lines.append(f"added    {path}")
        elif path not in new_files:
            lines.append(f"removed  {path}")
        elif old_files[path] != new_files[path]:
            lines.append(f"changed  {path}")
    if old.get("template") != new.get("template"):
        lines.append("changed  the rendered Packer template (packer/_templates/ or the role's template)")
    for kind in ("role", "distro", "customer"):
        lines += _settings(kind, old.get(kind, {}), new.get(kind, {}))
    if old.get("playbook_override") != new.get("playbook_override"):
        lines.append(f"playbook override: {old.get('playbook_override')} -> {new.get('playbook_override')}")
    if old.get("parent") != new.get("parent") and "parent" in new:
        lines.append(
            f"parent   {new['parent']['role']} changed (its fingerprint is not the one this image was built on)"
        )
    if old.get("vendor_image") != new.get("vendor_image") and "vendor_image" in new:
        was, now = old.get("vendor_image", {}), new["vendor_image"]
        lines.append(f"vendor   image changed: {was.get('name')} -> {now.get('name')}")
    if old.get("period") != new.get("period") and "period" in new:
        was = (old.get("period") or {}).get("start")
        lines.append(
            f"period   the {new['period']['days']}-day refresh period rolled over: {was} -> {new['period']['start']}"
        )
    if old.get("kiln") != new.get("kiln"):
        lines.append(f"kiln     manifest version {old.get('kiln')} -> {new.get('kiln')}")
    return lines


def explain(run: Context, role: str, distro: str, region: str, depth: int = 0) -> list[str]:
    from tasks.models import ImageKey

    pad = "  " * depth
    label = f"{role}/{distro}/{region}"
    row, status, _ = status_of(run, role, distro, region)
    if row is None:
        return [f"{pad}{label}: no image yet: the next run builds it (or copies it from another region)"]
    head = f"{pad}{label}: {row['image_id']} ({row['origin']} {age(row['created_at'])} ago)"
    after = _recorded(run, row, pad)
    if status == "up to date":
        return [f"{head} is up to date", *after]
    if status == "revoked":
        return [f"{head} is revoked ({row['revoked_reason']}): the next run rebuilds it"]
    if status == "parent revoked":
        return [f"{head} is stale: it was built on {revoked_below(run.results, row)}, which is revoked"]
    old = json.loads(row["manifest"])
    if not old.get("files") and not old.get("template"):
        return [f"{head} is stale; its manifest is unknown (recorded by `doit sync` from the cloud's tags)"]
    new = run.fingerprint(ImageKey(role, distro, region))[1]
    lines = [f"{head} is stale; the next run rebuilds it because:"]
    for change in manifest_diff(old, new):
        lines.append(f"{pad}  {change}")
        if change.startswith("parent") and "parent" in new:
            lines += explain(run, new["parent"]["role"], distro, region, depth + 2)
    old_tools, new_tools = old.get("tools") or {}, new.get("tools") or {}
    for tool in sorted(set(old_tools) | set(new_tools)):
        if old_tools.get(tool) != new_tools.get(tool):
            lines.append(
                f"{pad}  (tool     {tool} {old_tools.get(tool, '-')} -> {new_tools.get(tool, '-')}: recorded, not a reason to rebuild)"
            )
    return lines + after


def _recorded(run: Context, row: Any, pad: str) -> list[str]:
    """What the read audit found when the image was built, and the tools it was built with."""
    lines = [
        f"{pad}  missed   {name}: the play read it but it is not an input; a change to it would not rebuild"
        for name in run.results.missed_for(str(row["image_id"]))
    ]
    tools = json.loads(row["manifest"]).get("tools") or {}
    if tools:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(tools.items()))
        lines.append(f"{pad}  built with {shown} (tool versions are recorded, not fingerprinted)")
    return lines


def why_command(run: Context, roles: list[str]) -> str:
    if not roles:
        raise KilnError("doit why: name a role, e.g. `doit why core` or `doit why role=core`")
    for r in roles:
        if r not in run.catalog.roles:
            raise KilnError(f"doit why: unknown role '{r}'; roles: {', '.join(sorted(run.catalog.roles))}")
    run.offline = True
    _, distros, regions = scope(run)
    lines: list[str] = []
    for distro in distros:
        for region in regions:
            for role in roles:
                lines += explain(run, role, distro, region)
    for region in regions:
        at = run.results.last_confirmed(run.options.provider, region)
        when = f"{at} ({age(at)} ago)" if at else "never"
        lines.append(f"({run.options.provider} {region}: the database was last confirmed against the cloud {when})")
    return "\n".join(lines) + "\n"
