"""What a build runs on: the instance type (one, or a list), on-demand or spot.

`instance_type` (customer.toml, or a role's role.toml) may be a list; `spot = true` (customer
or role) builds on spot capacity with Packer's `spot_instance_types` and `spot_price = "auto"`.
When Packer reports that there is no spot capacity, the build runs once more on demand, on the
first type. All of it is placement, passed in the var file: never part of a fingerprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.catalog.load import Customer, Role


@dataclass(frozen=True)
class Capacity:
    variables: dict[str, Any]  # for the var file
    instance_type: str  # as the build row and the cost line name it
    kind: str  # on-demand | spot | on-demand (no spot capacity)
    spot: bool


def instance_types(role: Role, customer: Customer) -> list[str]:
    value = role.conf.get("instance_type") or customer.conf["instance_type"]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def spot_wanted(role: Role, customer: Customer) -> bool:
    own = role.conf.get("spot")
    return bool(customer.conf.get("spot", False) if own is None else own)


def plan(role: Role, customer: Customer, provider: str) -> list[Capacity]:
    if provider == "azure":
        # azure-arm's VM size is the customer's [azure] vm_size; spot is AWS's here.
        size = str(customer.azure()["vm_size"])
        return [Capacity({"instance_type": instance_types(role, customer)[0]}, size, "on-demand", False)]
    types = instance_types(role, customer)
    on_demand = {"instance_type": types[0], "spot_instance_types": [], "spot_price": ""}
    if not spot_wanted(role, customer):
        return [Capacity(on_demand, types[0], "on-demand", False)]
    # Packer refuses instance_type together with spot_instance_types.
    spot = {"instance_type": "", "spot_instance_types": types, "spot_price": "auto"}
    return [
        Capacity(spot, ", ".join(types), "spot", True),
        Capacity(on_demand, types[0], "on-demand (no spot capacity)", False),
    ]


# What Packer (and EC2 through it) says when it cannot get the capacity asked for: EC2 Fleet's
# and RunInstances' error codes, and their messages as Packer prints them.
_NO_CAPACITY = re.compile(
    r"InsufficientInstanceCapacity|UnfulfillableCapacity|capacity-not-available|MaxSpotInstanceCountExceeded"
    r"|SpotMaxPriceTooLow|no Spot capacity available|insufficient capacity",
    re.I,
)


def no_capacity(message: str, log: Path) -> str | None:
    """The telling phrase if a failed build ran out of capacity (its message or its log)."""
    found = _NO_CAPACITY.search(message)
    if found is None:
        try:
            found = _NO_CAPACITY.search(log.read_text(errors="replace"))
        except OSError:
            found = None
    return found.group(0) if found else None
