"""[lifecycle] settings (customer.toml, overridden key by key in role.toml): their checks and
the policy they make for a role. What the policy decides per image is tasks/fleet/lifecycle.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from tasks.errors import KilnError

AGES = ("deprecate_after", "disable_after", "deregister_after")
DEFAULT_KEEP = 2
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def seconds(text: str, shown: str, key: str) -> int:
    unit = _UNITS.get(text[-1:]) if text else None
    if unit is None or not text[:-1].isdigit():
        raise KilnError(f'{shown}: key \'{key}\' must be a duration like "90d" (days; also "12w", "36h"), not {text!r}')
    return int(text[:-1]) * unit


def check_lifecycle(table: dict[str, Any] | None, shown: str) -> None:
    """Values the schema's types cannot check; ages must grow deprecate <= disable <= deregister."""
    if not table:
        return
    keep = table.get("keep")
    if keep is not None and keep < 1:
        raise KilnError(f"{shown}: key 'lifecycle.keep' must be 1 or more (the newest N of each role stay), not {keep}")
    ages = {k: seconds(str(table[k]), shown, f"lifecycle.{k}") for k in AGES if table.get(k) is not None}
    named = [k for k in AGES if k in ages]
    for earlier, later in pairwise(named):
        if ages[earlier] > ages[later]:
            raise KilnError(
                f"{shown}: key 'lifecycle.{later}' ({table[later]}) is sooner than 'lifecycle.{earlier}'"
                f" ({table[earlier]}); the ages must grow: deprecate, then disable, then deregister"
            )


@dataclass(frozen=True)
class Policy:
    keep: int = DEFAULT_KEEP
    ages: dict[str, int] = field(default_factory=dict)  # action key -> seconds
    texts: dict[str, str] = field(default_factory=dict)  # action key -> "90d (customers/x/customer.toml)"

    @property
    def keep_only(self) -> bool:
        return not self.ages


def policy(
    customer: tuple[str, dict[str, Any] | None], role: tuple[str, dict[str, Any] | None], keep: int | None
) -> Policy:
    """The role's policy: its role.toml's keys over the customer's; `keep=` on the command
    line over both. Each part is (shown file, [lifecycle] table)."""
    merged: dict[str, tuple[Any, str]] = {}
    for shown, table in (customer, role):
        for k, v in (table or {}).items():
            if v is not None:
                merged[k] = (v, shown)
    ages = {k: seconds(str(merged[k][0]), merged[k][1], f"lifecycle.{k}") for k in AGES if k in merged}
    texts = {k: f"{merged[k][0]} ({merged[k][1]})" for k in AGES if k in merged}
    if keep is None:
        keep = int(merged["keep"][0]) if "keep" in merged else DEFAULT_KEEP
    return Policy(keep=keep, ages=ages, texts=texts)
