"""Which kiln builds are live in a region, as far as the account can tell: the build leases in
the customer's lease table that have not expired and whose holder is not a dead process on
this host (tasks/build/lease.py). What `doit cleanup` and `doit prune` must not touch.

Packer names what it makes after the image (`kiln build <image name>` on the instance), and
kiln's image names carry the fingerprint's first 12 characters, so a resource is matched to a
lease by that prefix. Packer's temporary key pairs and security groups are not named after
their build: while any build of the region is live they are left alone.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from tasks.build.lease import dead_here

if TYPE_CHECKING:
    from tasks.fleet.context import Context

# <role>-<distro>-<fingerprint[:12]>-<yyyymmddHHMMSSmmm>, as session.py names images.
_NAME = re.compile(r"-([0-9a-f]{12})-(\d{17})$")


def short_fingerprint(image_name: str) -> str | None:
    m = _NAME.search(image_name.removeprefix("kiln build "))
    return m.group(1) if m else None


class LiveBuilds:
    """One Scan of the lease table per region, made only when something needs the answer."""

    def __init__(self, run: Context) -> None:
        self.run = run
        self._by_region: dict[str, dict[str, str]] = {}

    def holders(self, region: str) -> dict[str, str]:
        """fingerprint -> holder of each live lease in the region."""
        if region not in self._by_region:
            self._by_region[region] = self._scan(region)
        return self._by_region[region]

    def _scan(self, region: str) -> dict[str, str]:
        provider = self.run.provider
        table = str(self.run.customer.conf["lease_table"])
        ddb = provider.client("dynamodb", region)

        def scan() -> list[dict[str, dict[str, str]]]:
            items: list[dict[str, dict[str, str]]] = []
            try:
                for page in ddb.get_paginator("scan").paginate(TableName=table):
                    items += page.get("Items", [])
            except ddb.exceptions.ResourceNotFoundException:
                return []  # no table: nobody ever took a lease here
            return items

        now = int(time.time())
        live: dict[str, str] = {}
        for item in provider.call(f"dynamodb Scan {table} in {region}", scan):
            key, holder = item.get("lease", {}).get("S", ""), item.get("holder", {}).get("S", "")
            expires = int(item.get("expires", {}).get("N", "0"))
            if expires > now and not dead_here(holder) and "/" in key:
                live[key.split("/", 1)[1]] = holder
        return live

    def of(self, region: str, name: str) -> str | None:
        """The holder of the live build a resource named after an image belongs to, if any."""
        short = short_fingerprint(name)
        if short is None:
            return None
        return next((h for fp, h in self.holders(region).items() if fp.startswith(short)), None)

    def any(self, region: str) -> str | None:
        """Some live build's holder in the region, if there is one."""
        return next(iter(self.holders(region).values()), None)
