"""The sandbox: moto's EC2 API server on loopback, started detached on first use and kept
until `doit sandbox-stop`, its state folder's removal or two idle hours (sandbox_lifetime.py). Seeded with a vendor-like image for every shipped distro, each
customer's instance profile and secrets bucket. Nothing in it costs money or leaves the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tasks.catalog.load import Catalog
from tasks.errors import KilnError
from tasks.providers.sandbox_lifetime import alive as _alive
from tasks.providers.sandbox_lifetime import check_settings, is_server, server_command, stop_lost, terminate

FAKE_KEY = "testing"  # moto accepts any key; this one is obviously not a credential
# Two vendor releases per distro: the newer one must win, as `most_recent` does on AWS.
VENDOR_RELEASES = ("20250601", "20260101")


def sandbox_dir(catalog: Catalog) -> Path:
    return catalog.state / "sandbox"


def vendor_seed(catalog: Catalog) -> list[dict[str, object]]:
    images: list[dict[str, object]] = []
    for name, distro in sorted(catalog.distros.items()):
        aws = distro.conf["aws"]
        for release in VENDOR_RELEASES:
            digest = hashlib.sha256(f"{name}/{release}".encode()).hexdigest()[:17]
            images.append(
                {
                    "ami_id": f"ami-{digest}",
                    "name": str(aws["name"]).replace("*", release),
                    "description": f"{distro.conf['description']} (sandbox stand-in for the vendor image)",
                    "owner_id": aws["owner"],
                    "public": True,
                    "virtualization_type": "hvm",
                    "architecture": aws["architecture"],
                    "state": "available",
                    "platform": None,
                    "root_device_type": "ebs",
                    "root_device_name": "/dev/xvda",
                    "creation_date": f"{release[:4]}-{release[4:6]}-{release[6:]}T00:00:00.000Z",
                    "hypervisor": "xen",
                }
            )
    return images


def _responds(endpoint: str) -> bool:
    """Any HTTP answer will do (an error status included): the server is up."""
    try:
        with urllib.request.urlopen(f"{endpoint}/kiln-ping", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def running_endpoint(catalog: Catalog) -> str | None:
    d = sandbox_dir(catalog)
    try:
        pid = int((d / "pid").read_text())
        port = int((d / "port").read_text())
    except (OSError, ValueError):
        return None
    endpoint = f"http://127.0.0.1:{port}"
    return endpoint if _alive(pid) and _responds(endpoint) else None


@contextlib.contextmanager
def _locked(catalog: Catalog):  # type: ignore[no-untyped-def]
    d = sandbox_dir(catalog)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fh = (d / "lock").open("a")
    except OSError as err:
        raise KilnError(f"{d}: cannot write the sandbox's state folder: {err.strerror}") from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def ensure_running(catalog: Catalog) -> str:
    """The sandbox's endpoint, starting and seeding the server if it is not running."""
    with _locked(catalog) as d:
        endpoint = running_endpoint(catalog)
        if endpoint:
            return endpoint
        wanted = os.environ.get("KILN_SANDBOX_PORT")
        if wanted:
            if not wanted.isdigit():
                raise KilnError(f"variable KILN_SANDBOX_PORT: {wanted!r} is not a port number")
            port = int(wanted)
            if _port_taken(port):
                raise KilnError(
                    f"KILN_SANDBOX_PORT: port {port} on 127.0.0.1 is taken by another program; free it or unset KILN_SANDBOX_PORT"
                )
        else:
            port = _free_port()
        amis = d / "vendor-images.json"
        amis.write_text(json.dumps(vendor_seed(catalog), indent=1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        # The server imports kiln's emulator fix from this very package.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        env.update(
            {
                "MOTO_AMIS_PATH": str(amis),
                "AWS_ACCESS_KEY_ID": FAKE_KEY,
                "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        check_settings()
        log = (d / "server.log").open("ab")
        proc = subprocess.Popen(
            # The state folder on its command line: it stops itself when the folder goes, and
            # sandbox-stop finds it without the pid file (tasks/providers/sandbox_lifetime.py).
            server_command(d.resolve(), port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=d,
        )
        log.close()
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _responds(endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise KilnError(f"sandbox: the moto server did not start on 127.0.0.1:{port}; see {d / 'server.log'}")
            time.sleep(0.1)
        _seed(catalog, endpoint)
        (d / "port").write_text(str(port))
        (d / "pid").write_text(str(proc.pid))
        return endpoint


def _seed(catalog: Catalog, endpoint: str) -> None:
    import boto3

    session = boto3.Session(aws_access_key_id=FAKE_KEY, aws_secret_access_key=FAKE_KEY, region_name="us-east-1")
    iam = session.client("iam", endpoint_url=endpoint)
    s3 = session.client("s3", endpoint_url=endpoint)
    profiles: set[str] = set()
    buckets: set[str] = set()
    for name in catalog.customer_names:
        conf = catalog.customer(name).conf
        profiles.add(str(conf["instance_profile"]))
        if conf.get("secrets_bucket"):
            buckets.add(str(conf["secrets_bucket"]))
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    for profile in sorted(profiles):
        iam.create_role(RoleName=profile, AssumeRolePolicyDocument=trust)
        iam.create_instance_profile(InstanceProfileName=profile)
        iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=profile)
    for bucket in sorted(buckets):
        s3.create_bucket(Bucket=bucket)


def stop(catalog: Catalog, say: Callable[[str], None] | None = None) -> bool:
    with _locked(catalog) as d:
        try:
            pid = int((d / "pid").read_text())
        except (OSError, ValueError):
            pid = 0
        lost = stop_lost(d.resolve(), pid, say or (lambda _text: None))
        if not pid:
            return lost > 0
        stopped = lost > 0
        # Only a sandbox server is signalled: a stale pid file may name any process by now.
        if _alive(pid) and is_server(pid):
            terminate(pid)
            stopped = True
        for name in ("pid", "port"):
            (d / name).unlink(missing_ok=True)
        return stopped
