"""A build lease whose holder was SIGKILLed on this same host is taken over at once; a lease
of a live process, here or on another host, is still waited for until it expires."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import Kiln, sandbox_client

SANDBOX = ("provider=sandbox", "region=us-east-1")


def held_packer(tmp_path: Path, mark: Path, before: bool) -> dict[str, str]:
    """The real Packer with a pause before (or after) its build, during which the test kills
    kiln; the wrapper writes its pid to `mark` when the pause starts."""
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir(exist_ok=True)
    pause = f'[ "$1" = build ] && {{ echo $$ > {mark}; sleep 300; }}'
    body = (
        f'#!/bin/bash\n{pause}\nexec /usr/bin/packer "$@"\n'
        if before
        else f'#!/bin/bash\n/usr/bin/packer "$@"\ncode=$?\n{pause}\nexit $code\n'
    )
    fake.write_text(body)
    fake.chmod(0o755)
    return {"PATH": f"{fake.parent}:/usr/bin:/bin"}


def kill_kiln_when(kiln: Kiln, env: dict[str, str], mark: Path, *args: str) -> int:
    """Start `doit args`, SIGKILL it (no chance to clean up) once mark appears, and end the
    held Packer stand-in too (a real Packer would have finished on its own); return kiln's pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", *args],
        cwd=kiln.root,
        env={**kiln.env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (mark.exists() and mark.read_text().strip()):
        assert proc.poll() is None, "kiln ended before the kill point"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.killpg(int(mark.read_text()), signal.SIGKILL)  # the stand-in leads its own session
    return proc.pid


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
