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

from dataclasses import dataclass
from datetime import UTC, datetime

from tasks.catalog.lifecycle import AGES, DEFAULT_KEEP, Policy, check_lifecycle, policy, seconds

__all__ = ["AGES", "DEFAULT_KEEP", "Policy", "check_lifecycle", "policy", "seconds"]


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
