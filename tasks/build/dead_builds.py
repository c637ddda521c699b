"""The next run cleans up after a killed one, before it builds the same image.

Called under this machine's lock for the image's fingerprint (and, in a cloud, the account's
lease), so no live build of this fingerprint can be running here: a build row of this
fingerprint still `running` belongs to a run that was killed. And a lease taken over (its
holder's pid gone on this host, or its lease expired) means the holder's build died wherever it
ran. Either way, what that build left is removed first, by the names kiln and Packer give it:

- what the build's trail (tasks/build/trail.py: Packer's own lines, noted as it said them)
  names: its temporary key pair and security group, its instance, its image;
- its instance by Packer's run_tags (`kiln build <role>-<distro>-<fingerprint[:12]>-<stamp>`),
  with the `packer_*` key pair and group that instance used, and the key pair kiln imported
  for a sandbox target (`kiln-target-<role>-<pid>-...`, its pid dead);
- an image of that name, or the trail's, without kiln's `fingerprint` tag (killed before the
  commit point);
- on this machine: the unfinished local layer (`.<name>.<pid>`, its pid dead) and the sandbox
  target's processes and mounts.

The dead build rows are marked `crashed` with what was removed, and one line per build says it.
Nothing is looked up in the cloud unless there is such a build: a normal run pays nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.build import lease, trail
from tasks.build.rootfs import mounts_under, processes_in, release
from tasks.errors import KilnError
from tasks.models import ImageKey
from tasks.records.results import Results

ALIVE_STATES = ["pending", "running", "stopping", "stopped"]


def pid_gone(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False


def sweep(
    key: ImageKey,
    fp: str,
    *,
    provider_name: str,
    provider: Any,
    results: Results,
    state: Path,
    workdir: Path,
    say: Callable[[str], None],
) -> None:
    """workdir: the image's working folder, where its last build noted what Packer made."""
    """Remove what killed builds of this image left, and say so; call under the image's lock."""
    rows = results.read(
        "SELECT id, started_at, host, pid FROM builds WHERE provider=? AND region=? AND fingerprint=? AND status='running'",
        (provider_name, key.region, fp),
    )
    holder = lease.TAKEN_OVER.pop(f"{key.region}/{fp}", None)
    if not rows and holder is None:
        return
    name = f"{key.role}-{key.distro}-{fp[:12]}"
    removed: list[str] = []
    left: list[str] = []
    if provider_name in ("aws", "sandbox"):
        _cloud(provider, key, name, removed, left, workdir)
    _local(state, key, name, removed)
    what = f"removed {', '.join(removed)}" if removed else "nothing of it was left"
    rest = f"; left: {'; '.join(left)}" if left else ""
    for row in rows:
        results.finish_build(int(row["id"]), "crashed", message=f"killed; the next run: {what}{rest}")
        say(
            f"{key.label}: build {row['id']} (started {row['started_at']}{_by(row)}) was killed before it finished;"
            f" {what}{rest}; marked it crashed"
        )
    if holder is not None and not rows:
        say(f"{key.label}: the build of {holder} did not finish; {what}{rest}")


def _by(row: Any) -> str:
    """Who ran the killed build, when the row says (rows before kiln recorded it do not)."""
    return f" by pid {row['pid']} on {row['host']}" if row["host"] else ""


def _cloud(provider: Any, key: ImageKey, name: str, removed: list[str], left: list[str], workdir: Path) -> None:
    region = key.region
    ec2: Any = provider.client("ec2", region)

    def attempt(what: str, by_hand: str, call: str, fn: Any) -> bool:
        try:
            provider.call(call, fn)
        except KilnError as err:
            left.append(f"{what} ({err}; remove it by hand: {by_hand})")
            return False
        removed.append(what)
        return True

    noted = trail.read(workdir)  # what Packer said it made
    filters = [{"Name": "instance-state-name", "Values": ALIVE_STATES}]
    searches = [[{"Name": "tag:Name", "Values": [f"kiln build {name}-*"]}, *filters]]
    if noted.get("instance"):
        searches.append([{"Name": "instance-id", "Values": noted["instance"]}, *filters])
    instances: dict[str, dict[str, Any]] = {}
    for search in searches:
        found = provider.call(
            f"ec2 DescribeInstances (a killed build's) in {region}",
            lambda search=search: ec2.describe_instances(Filters=search),
        )
        instances.update({i["InstanceId"]: i for r in found.get("Reservations", []) for i in r.get("Instances", [])})
    ended: list[str] = []
    keys: set[str] = set(noted.get("key pair", []))
    groups: set[tuple[str, str]] = set()
    for iid, i in sorted(instances.items()):
        keys.add(str(i.get("KeyName", "")))
        groups |= {(g["GroupId"], g.get("GroupName", "")) for g in i.get("SecurityGroups", [])}
        if attempt(
            f"instance {iid}",
            f"aws ec2 terminate-instances --region {region} --instance-ids {iid}",
            f"ec2 TerminateInstances {iid} in {region}",
            lambda iid=iid: ec2.terminate_instances(InstanceIds=[iid]),
        ):
            ended.append(iid)
    if ended:  # its security group is free only once the instance has ended
        waiter = ec2.get_waiter("instance_terminated")
        with contextlib.suppress(KilnError):
            provider.call(
                f"ec2 DescribeInstances (waiting for {len(ended)} to end) in {region}",
                lambda: waiter.wait(InstanceIds=ended, WaiterConfig={"Delay": 5, "MaxAttempts": 60}),
            )
    if noted.get("security group"):  # made before the instance: known by its name only
        named = provider.call(
            f"ec2 DescribeSecurityGroups (a killed build's) in {region}",
            lambda: ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": noted["security group"]}]
            ).get("SecurityGroups", []),
        )
        groups |= {(g["GroupId"], g["GroupName"]) for g in named}
    for gid, gname in sorted(groups):
        if gname.startswith("packer_"):
            attempt(
                f"security group {gid} ({gname})",
                f"aws ec2 delete-security-group --region {region} --group-id {gid}",
                f"ec2 DeleteSecurityGroup {gid} in {region}",
                lambda gid=gid: ec2.delete_security_group(GroupId=gid),
            )
    pairs = provider.call(f"ec2 DescribeKeyPairs in {region}", lambda: ec2.describe_key_pairs().get("KeyPairs", []))
    target = re.compile(rf"^kiln-target-{re.escape(key.role)}-(\d+)-\d+$")  # as sandbox_target names it
    for k in pairs:
        kname = str(k.get("KeyName", ""))
        ours = kname in keys and kname.startswith("packer_")
        m = target.match(kname)
        stale_target = m is not None and pid_gone(m.group(1))
        if ours or stale_target:
            attempt(
                f"key pair {kname}",
                f"aws ec2 delete-key-pair --region {region} --key-name {kname}",
                f"ec2 DeleteKeyPair {kname} in {region}",
                lambda kname=kname: ec2.delete_key_pair(KeyName=kname),
            )
    for ami in noted.get("image", []):  # made, maybe not even tagged by Packer yet
        image = provider.describe_image(region, ami)
        if image is not None and not image.fingerprint:
            attempt(
                f"image {ami} without its fingerprint tag",
                f"aws ec2 deregister-image --region {region} --image-id {ami} (and its snapshots)",
                f"ec2 DeregisterImage {ami} in {region}",
                lambda ami=ami: provider.deregister(region, ami),
            )
    provider.forget(region)
    gone = set(noted.get("image", []))
    for image in provider.our_images(region):
        if not image.fingerprint and image.name.startswith(f"{name}-") and image.image_id not in gone:
            attempt(
                f"image {image.image_id} without its fingerprint tag",
                f"aws ec2 deregister-image --region {region} --image-id {image.image_id} (and its snapshots)",
                f"ec2 DeregisterImage {image.image_id} in {region}",
                lambda image=image: provider.deregister(region, image.image_id),
            )
    provider.forget(region)


def _local(state: Path, key: ImageKey, name: str, removed: list[str]) -> None:
    """Unfinished layers of dead runs, and the sandbox target's processes and mounts."""
    layers = state / "local" / "layers"
    for tmp in sorted(layers.glob(f".{name}.*")) if layers.is_dir() else []:
        if pid_gone(tmp.name.rsplit(".", 1)[-1]):
            _release(tmp, removed, "the unfinished layer")
            shutil.rmtree(tmp, ignore_errors=True)
    target = state / "sandbox" / "targets" / f"{key.role}-{key.distro}"
    if target.is_dir():
        _release(target, removed, "the sandbox target")


def _release(tree: Any, removed: list[str], what: str) -> None:
    procs, mounts = len(processes_in(tree)), len(mounts_under(tree))
    release(tree)
    if procs or mounts:
        removed.append(f"{procs} process(es) and {mounts} mount(s) of {what} {tree}")
    elif what == "the unfinished layer":
        removed.append(f"{what} {tree}")
