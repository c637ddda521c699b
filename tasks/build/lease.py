"""A build lease in the cloud, so teammates on different machines build an image once.

One DynamoDB item per (region, fingerprint) in the account's lease table (made on first use),
written only if absent or expired. The holder renews it while Packer runs; a holder that died
stops renewing and is taken over once its lease has expired, or at once when it ran on this
host and its process is gone (a kill -9, an OOM kill: nothing will renew it).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.errors import KilnError

KEY = "lease"
# region/fingerprint -> the holder whose lease this process took over (dead or expired): the
# build that follows first removes what that holder's build left (tasks/build/dead_builds.py).
TAKEN_OVER: dict[str, str] = {}


class BuildLease:
    def __init__(self, provider: Any, region: str, table: str, seconds: int, fingerprint: str) -> None:
        if seconds < 10:
            raise KilnError(f"lease_seconds: {seconds} is too short for a build to renew it; use 60 or more")
        self.provider = provider
        self.region = region
        self.table = table
        self.seconds = seconds
        self.key = f"{region}/{fingerprint}"
        self.me = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def _ddb(self) -> Any:
        return self.provider.client("dynamodb", self.region)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return self.provider.call(f"dynamodb {what} {self.table} in {self.region}", fn)

    # -- the table --------------------------------------------------------------------------

    def _create_table(self) -> None:
        ddb = self._ddb

        def create() -> None:
            with contextlib.suppress(ddb.exceptions.ResourceInUseException):  # a teammate made it
                ddb.create_table(
                    TableName=self.table,
                    KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            ddb.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 2, "MaxAttempts": 60})

        self._call("CreateTable", create)
        # Expired leases then vanish on their own; not every account allows it, and nothing needs it.
        with contextlib.suppress(Exception):
            ddb.update_time_to_live(
                TableName=self.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
            )

    # -- taking, renewing, giving back --------------------------------------------------------

    def _try_take(self) -> bool | None:
        """True: taken; False: someone else holds it; None: no table yet."""
        ddb = self._ddb
        now = int(time.time())

        def put() -> bool | None:
            try:
                ddb.put_item(
                    TableName=self.table,
                    Item={
                        KEY: {"S": self.key},
                        "holder": {"S": self.me},
                        "expires": {"N": str(now + self.seconds)},
                    },
                    ConditionExpression="attribute_not_exists(#k) OR #e < :now OR #h = :me",
                    ExpressionAttributeNames={"#k": KEY, "#e": "expires", "#h": "holder"},
                    ExpressionAttributeValues={":now": {"N": str(now)}, ":me": {"S": self.me}},
                )
                return True
            except ddb.exceptions.ConditionalCheckFailedException:
                return False
            except ddb.exceptions.ResourceNotFoundException:
                return None

        taken: bool | None = self._call("PutItem", put)
        return taken

    def holder(self) -> tuple[str, int] | None:
        ddb = self._ddb
        raw = self._call(
            "GetItem", lambda: ddb.get_item(TableName=self.table, Key={KEY: {"S": self.key}}, ConsistentRead=True)
        )
        item = raw.get("Item")
        if not item:
            return None
        return item["holder"]["S"], int(item["expires"]["N"])

    def _take_from_dead(self, who: str) -> bool:
        """Take the lease from a holder on this host whose process is gone, at once: only if
        the item still names that holder (a teammate may have taken it meanwhile)."""
        ddb = self._ddb
        now = int(time.time())

        def put() -> bool:
            try:
                ddb.put_item(
                    TableName=self.table,
                    Item={KEY: {"S": self.key}, "holder": {"S": self.me}, "expires": {"N": str(now + self.seconds)}},
                    ConditionExpression="#h = :old",
                    ExpressionAttributeNames={"#h": "holder"},
                    ExpressionAttributeValues={":old": {"S": who}},
                )
                return True
            except ddb.exceptions.ConditionalCheckFailedException:
                return False

        taken: bool = self._call("PutItem", put)
        return taken

    def acquire(self, say: Callable[[str], None]) -> str | None:
        """Take the lease, waiting for its holder if need be; returns whom we waited for."""
        waited_since: float | None = None
        said: str | None = None
        expires = 0
        while True:
            taken = self._try_take()
            if taken is None:
                say(f"making the build lease table {self.table} in {self.region} (once per account and region)")
                self._create_table()
                continue
            if taken:
                break
            held = self.holder()
            if held is None:
                continue  # given back between our two calls
            who, expires = held
            if dead_here(who) and self._take_from_dead(who):
                say(f"took over the build lease of {who} at once: it ran on this host and its process is gone")
                said = who  # the caller still looks for an image it may have finished
                expires = -1
                break
            if waited_since is None:
                waited_since = time.monotonic()
            if who != said:
                say(
                    f"waiting for {who}, which holds the build lease for this image"
                    f" (it expires in {max(0, expires - int(time.time()))}s unless renewed)"
                )
                said = who
            # Short polls first (a teammate's build may be nearly done), then every 10 seconds.
            time.sleep(min(10.0, 1.0 + (time.monotonic() - waited_since) / 6))
        if said is not None and expires <= time.time():
            TAKEN_OVER[self.key] = said  # expired, or (expires -1) a dead holder of this host
        if said is not None and expires >= 0:
            how = "took over the expired build lease of" if expires <= time.time() else "the build lease is ours after"
            say(f"{how} {said}")
        self._renewer = threading.Thread(target=self._renew, name="kiln-lease", daemon=True)
        self._renewer.start()
        return said

    def _renew(self) -> None:
        ddb = self._ddb
        while not self._stop.wait(self.seconds / 3):
            with contextlib.suppress(Exception):  # a missed renewal is retried; expiry is far off
                ddb.update_item(
                    TableName=self.table,
                    Key={KEY: {"S": self.key}},
                    UpdateExpression="SET #e = :e",
                    ConditionExpression="#h = :me",
                    ExpressionAttributeNames={"#e": "expires", "#h": "holder"},
                    ExpressionAttributeValues={
                        ":e": {"N": str(int(time.time()) + self.seconds)},
                        ":me": {"S": self.me},
                    },
                )

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        ddb = self._ddb
        # Only our own lease; if this fails the lease simply expires.
        with contextlib.suppress(Exception):
            ddb.delete_item(
                TableName=self.table,
                Key={KEY: {"S": self.key}},
                ConditionExpression="#h = :me",
                ExpressionAttributeNames={"#h": "holder"},
                ExpressionAttributeValues={":me": {"S": self.me}},
            )


def dead_here(holder: str) -> bool:
    """A holder ('<host> pid <n> (<id>)') on this host whose process no longer runs. A holder
    on another host is never judged here: only its lease's expiry says it is gone."""
    m = _HOLDER.match(holder)
    if m is None or m.group(1) != socket.gethostname():
        return False
    pid = int(m.group(2))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie has finished: it holds nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


_HOLDER = re.compile(r"^(\S+) pid (\d+) \(")


@contextlib.contextmanager
def build_lease(
    provider: Any, region: str, table: str, seconds: int, fingerprint: str, say: Callable[[str], None]
) -> Iterator[str | None]:
    """Hold the lease for one build; yields who held it before us (None if nobody did)."""
    lease = BuildLease(provider, region, table, seconds, fingerprint)
    waited_for = lease.acquire(say)
    try:
        yield waited_for
    finally:
        lease.release()
