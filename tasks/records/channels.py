"""Channels: named pointers at a role's image per provider, customer, distro and region
(`prod`, `staging`), with every assignment kept. The newest assignment of a channel is where it
points; the one before is what it pointed at last, which prune spares as the rollback target."""

from __future__ import annotations

import getpass
import socket
import sqlite3
from dataclasses import dataclass

from tasks.records.results import Results, now

# SSM parameter names allow letters, digits and _.-; channels are kept lower-case like roles.
_CHANNEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


def valid_channel(name: str) -> bool:
    return bool(name) and name[0] not in "._-" and set(name) <= _CHANNEL_CHARS and len(name) <= 64


def parameter_name(customer: str, distro: str, role: str, channel: str) -> str:
    """Where Terraform, CloudFormation and launch templates read the channel (SSM, per region)."""
    return f"/kiln/{customer}/{distro}/{role}/{channel}"


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Assignment:
    distro: str
    region: str
    role: str
    channel: str
    image_id: str
    previous_image: str | None
    who: str
    at: str
    parameter: str | None

    @staticmethod
    def of(row: sqlite3.Row) -> Assignment:
        return Assignment(
            str(row["distro"]),
            str(row["region"]),
            str(row["role"]),
            str(row["channel"]),
            str(row["image_id"]),
            row["previous_image"],
            str(row["who"]),
            str(row["at"]),
            row["parameter"],
        )


def record(results: Results, provider: str, customer: str, a: Assignment) -> None:
    with results.write() as con:
        con.execute(
            "INSERT INTO channels (provider, customer, distro, region, role, channel, image_id, previous_image,"
            " who, at, parameter) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (provider, customer, a.distro, a.region, a.role, a.channel, a.image_id, a.previous_image, a.who, a.at,
             a.parameter),
        )  # fmt: skip


def history(results: Results, provider: str, customer: str, role: str | None = None) -> list[Assignment]:
    """Every assignment, oldest first."""
    sql = "SELECT * FROM channels WHERE provider=? AND customer=?"
    args: tuple[str, ...] = (provider, customer)
    if role is not None:
        sql, args = sql + " AND role=?", (*args, role)
    return [Assignment.of(r) for r in results.read(sql + " ORDER BY id", args)]


def current(
    results: Results, provider: str, customer: str, role: str | None = None
) -> dict[tuple[str, str, str, str], Assignment]:
    """(role, distro, region, channel) -> its newest assignment: where each channel points."""
    out: dict[tuple[str, str, str, str], Assignment] = {}
    for a in history(results, provider, customer, role):
        out[(a.role, a.distro, a.region, a.channel)] = a
    return out


def pointing_at(results: Results, provider: str, customer: str) -> dict[tuple[str, str], list[str]]:
    """(region, image id) -> the channels that point at it now."""
    out: dict[tuple[str, str], list[str]] = {}
    for a in current(results, provider, customer).values():
        out.setdefault((a.region, a.image_id), []).append(a.channel)
    return out


def held(results: Results, provider: str, customer: str, region: str) -> dict[str, str]:
    """Images prune must spare in a region: where a channel points, and where it pointed last."""
    out: dict[str, str] = {}
    for a in current(results, provider, customer).values():
        if a.region != region:
            continue
        out.setdefault(a.image_id, f"on channel {a.channel} of {a.role}")
        if a.previous_image:
            out.setdefault(a.previous_image, f"channel {a.channel} of {a.role} pointed at it last (rollback)")
    return out


__all__ = ["Assignment", "current", "held", "history", "now", "parameter_name", "pointing_at", "record", "who"]
