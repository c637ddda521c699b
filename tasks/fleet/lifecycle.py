"""The lifecycle policy ([lifecycle] in customer.toml, overridden key by key in role.toml) and
what it decides for each image of a role, distro and region. Plain values in and out: the cloud
calls are `doit prune`'s (tasks/fleet/prune.py).

- `keep = N`: the newest N are never disabled nor deregistered (default 2);
- `deprecate_after`, `disable_after`, `deregister_after`: durations ("90d", "12w", "36h")
  since the image was created. Deprecation may reach a kept image: it only hides the image
  from others' listings, it still launches, and it is undone by DisableImageDeprecation.
- With no age set, `keep` alone is the policy: every image beyond the newest N is deregistered
  (what prune always did). Once any age is set, each action happens only past its age.

Never an image that is held: current, named in an export, in use (the caller says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
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


@dataclass(frozen=True)
class Facts:
    """What the decision needs to know of one image."""

    image_id: str
    created: str  # ISO 8601, as the cloud says
    state: str = "available"  # available | disabled
    deprecated: bool = False  # a deprecation time is set, now or soon
    held: str | None = None  # why it must not be touched (current, exported, in use)


@dataclass(frozen=True)
class Decision:
    image_id: str
    action: str  # keep | held | deprecate | disable | deregister
    why: str


def created_at(text: str) -> datetime | None:
    try:
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


HARMLESS = "deprecation is harmless and reversible: it still launches, and DisableImageDeprecation undoes it"


def decide(newest_first: list[Facts], pol: Policy, now: datetime, retire: bool = True) -> list[Decision]:
    """One decision per image of a group, newest first. retire=False: the provider cannot
    deprecate or disable (local layers, Azure managed images), only deregister."""
    out: list[Decision] = []
    for n, f in enumerate(newest_first):
        kept = n < pol.keep
        beyond = f"beyond the newest {pol.keep}"
        if pol.keep_only:
            action, why = ("keep", f"one of the newest {pol.keep}") if kept else ("deregister", "")
            out.append(_unless_held(f, action, why))
            continue
        born = created_at(f.created)
        age = (now - born).total_seconds() if born is not None else 0.0

        def past(action: str, age: float = age) -> bool:
            return action in pol.ages and age >= pol.ages[action]

        texts = pol.texts
        if not kept and past("deregister_after"):
            action, why = "deregister", f"older than deregister_after {texts['deregister_after']}, {beyond}"
        elif not kept and retire and past("disable_after") and f.state != "disabled":
            action, why = "disable", f"older than disable_after {texts['disable_after']}, {beyond}"
        elif retire and past("deprecate_after") and not f.deprecated and f.state != "disabled":
            note = f"; one of the newest {pol.keep}: {HARMLESS}" if kept else f", {beyond}"
            action, why = "deprecate", f"older than deprecate_after {texts['deprecate_after']}{note}"
        elif not retire and (past("disable_after") or past("deprecate_after")):
            action, why = "keep", "past its deprecate or disable age, but this provider can only deregister"
        else:
            action, why = "keep", _why_kept(f, kept, pol)
        out.append(_unless_held(f, action, why))
    return out


def _unless_held(f: Facts, action: str, why: str) -> Decision:
    """An image something holds gets no action; one kept anyway says why it is kept."""
    if f.held is not None and action != "keep":
        return Decision(f.image_id, "held", f.held)
    return Decision(f.image_id, action, why)


def _why_kept(f: Facts, kept: bool, pol: Policy) -> str:
    if f.state == "disabled":
        return "disabled already" + ("" if "deregister_after" in pol.ages else " (no deregister_after set)")
    parts = [f"one of the newest {pol.keep}"] if kept else []
    if f.deprecated:
        parts.append("deprecated already")
    first = next((k for k in AGES if k in pol.ages), None)
    if not parts and first is not None:
        parts.append(f"younger than {first} {pol.texts[first]}")
    return "; ".join(parts) or "no age in the policy applies"
