"""`doit revoke image=<id> reason="..."`: an image that must never be used again.

Tagged `revoked` in the cloud (so teammates' runs skip it too) and marked in the database. It is
never adopted, copied or built upon; the next run of its role builds a new one, and every image
built on it shows as stale until rebuilt.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tasks.errors import KilnError

if TYPE_CHECKING:
    from tasks.fleet.context import Context


def descendants(run: Context, image_id: str) -> list[str]:
    out: list[str] = []
    todo = [image_id]
    while todo:
        parent = todo.pop()
        for row in run.results.read("SELECT image_id, role, region FROM images WHERE parent_image=?", (parent,)):
            if row["image_id"] not in out:
                out.append(f"{row['role']}/{row['region']} {row['image_id']}")
                todo.append(row["image_id"])
    return out


def copies(run: Context, image_id: str) -> list[tuple[str, str]]:
    """(image id, region) of the image and every copy of the same bits: its source if it is a
    copy, and the copies made from any of them."""
    found: dict[str, str] = {}
    todo = [image_id]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        rows = run.results.by_image(current)
        if not rows:
            continue
        found[current] = str(rows[-1]["region"])
        if rows[-1]["origin"] == "copied" and rows[-1]["source_image"]:
            todo.append(str(rows[-1]["source_image"]))
        todo += [
            str(r["image_id"])
            for r in run.results.read(
                "SELECT image_id FROM images WHERE origin='copied' AND source_image=?", (current,)
            )
        ]
    return sorted(found.items(), key=lambda item: (item[0] != image_id, item[1]))


def revoke_command(run: Context, image_id: str, reason: str) -> str:
    if not image_id:
        raise KilnError(
            'variable image: name the image to revoke, e.g. doit revoke image=ami-0123 reason="CVE-2026-1234"'
        )
    if not reason.strip():
        raise KilnError('variable reason: say why the image is revoked, e.g. reason="CVE-2026-1234"')
    rows = run.results.by_image(image_id)
    if not rows:
        raise KilnError(
            f"variable image: {image_id} is not in kiln's results database ({run.results.path}); run `doit sync` first"
        )
    row = rows[-1]
    if row["provider"] != run.options.provider:
        raise KilnError(
            f"variable provider: {image_id} was made with provider {row['provider']}; add provider={row['provider']}"
        )
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []
    below: list[str] = []
    # The same bits in other regions are revoked with it: a copy must not bring it back.
    for member, region in copies(run, image_id):
        run.provider.tag_image(region, member, {"revoked": reason.strip()[:250], "revoked-at": at})
        run.results.revoke(member, reason.strip())
        what = "revoked" if member == image_id else "revoked its copy"
        lines.append(f"{what} {member} ({row['role']}/{row['distro']}/{region}): {reason.strip()}")
        below += descendants(run, member)
    lines.append("the next run of its role builds a new one")
    from tasks.records.channels import pointing_at

    on = pointing_at(run.results, row["provider"], row["customer"])
    for member, region in copies(run, image_id):
        for channel in sorted(on.get((region, member), [])):
            lines.append(
                f"channel {channel} of {row['role']} ({region}) still points at {member}: it stays there until"
                f" promoted again (doit promote {row['role']} channel={channel})"
            )
    if below:
        lines.append(f"built on it, now stale until rebuilt: {', '.join(below)}")
    return "\n".join(lines) + "\n"
