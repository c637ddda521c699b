"""A build lease whose holder was SIGKILLed on this same host is taken over at once; a lease
of a live process, here or on another host, is still waited for until it expires."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from conftest import Kiln, held_packer, kill_kiln_when, sandbox_client

SANDBOX = ("provider=sandbox", "region=us-east-1")


def lease_items(kiln: Kiln) -> list[dict[str, dict[str, str]]]:
    ddb = sandbox_client("dynamodb", kiln.endpoint(), "us-east-1")
    return ddb.scan(TableName="kiln-build-leases")["Items"]  # type: ignore[no-any-return]


def test_a_sigkilled_holder_on_this_host_is_taken_over_at_once(kiln: Kiln, tmp_path: Path) -> None:
    kiln.doit("sandbox")
    mark = tmp_path / "packer.pid"
    dead = kill_kiln_when(kiln, held_packer(tmp_path, mark, before=True), mark, "base-vmi", *SANDBOX)
    # Left by the kill: the lease (of a dead pid, renewed by nobody) and a build row 'running'.
    holders = [i["holder"]["S"] for i in lease_items(kiln)]
    assert len(holders) == 1 and holders[0].startswith(f"{socket.gethostname()} pid {dead} ")
    assert [r["status"] for r in kiln.rows("SELECT status FROM builds")] == ["running"]
    assert kiln.ec2().describe_images(Owners=["self"])["Images"] == []

    proc = kiln.doit("base-vmi", *SANDBOX)
    assert f"took over the build lease of {holders[0]} at once: it ran on this host and its process is gone" in (
        proc.stderr
    )
    assert "waiting for" not in proc.stderr
    assert len(kiln.ec2().describe_images(Owners=["self"])["Images"]) == 1
    assert lease_items(kiln) == []


def put_lease(kiln: Kiln, holder: str, seconds: int) -> int:
    kiln.doit("base-vmi", *SANDBOX)
    fp = kiln.rows("SELECT fingerprint FROM images WHERE role='base-vmi'")[0][0]
    expires = int(time.time()) + seconds
    sandbox_client("dynamodb", kiln.endpoint(), "us-east-1").put_item(
        TableName="kiln-build-leases",
        Item={"lease": {"S": f"us-east-1/{fp}"}, "holder": {"S": holder}, "expires": {"N": str(expires)}},
    )
    return expires


def test_a_live_holder_on_this_host_is_waited_for(kiln: Kiln) -> None:
    holder = f"{socket.gethostname()} pid {os.getpid()} (cafe0001)"  # this test: alive
    expires = put_lease(kiln, holder, 4)
    proc = kiln.doit("base-vmi", *SANDBOX, "force=1")
    assert f"waiting for {holder}, which holds the build lease" in proc.stderr
    assert f"took over the expired build lease of {holder}" in proc.stderr
    assert time.time() >= expires, "a live holder's lease was taken before it expired"


def test_a_holder_on_another_host_is_waited_for_whatever_its_pid(kiln: Kiln) -> None:
    holder = "ci-runner-7 pid 999999 (cafe0002)"  # no such pid here, but it is not ours to judge
    expires = put_lease(kiln, holder, 4)
    proc = kiln.doit("base-vmi", *SANDBOX, "force=1")
    assert f"waiting for {holder}, which holds the build lease" in proc.stderr
    assert "at once" not in proc.stderr
    assert time.time() >= expires
