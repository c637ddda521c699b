"""`doit cleanup [apply=1]`: what killed builds left in the customer's regions, found and (with
apply=1) removed, for teams whose CI was killed on another machine:

- instances Packer launched for kiln (its run_tags: `Name = "kiln build <image name>"`, see
  packer/_templates/amazon-ebs.pkr.hcl.j2) whose build is not live: terminated;
- Packer's temporary security groups (`packer_*`) and key pairs (`packer_*`, and the sandbox
  targets' `kiln-target-*`): deleted when no kiln build of the region is live and no instance
  that stays uses them;
- kiln's images without a fingerprint tag (tasks/fleet/orphans.py): deregistered with their
  snapshots.

A build is live while its lease is (tasks/fleet/live_builds.py). One line per thing; where a
removal fails, the line says what is left and the command that removes it by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tasks.errors import KilnError
from tasks.fleet.inventory import age
from tasks.fleet.live_builds import LiveBuilds
from tasks.fleet.orphans import orphan_lines

if TYPE_CHECKING:
    from tasks.fleet.context import Context

RUN_TAG = "kiln build "  # the Name Packer's run_tags give kiln's build instances
TEMPORARY = "packer_"  # Packer's temporary key pairs and security groups
TARGET_KEYS = "kiln-target-"  # key pairs kiln imports for provision=1 sandbox targets
STATES = ["pending", "running", "stopping", "stopped"]


def _pages(client: Any, op: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator(op).paginate(**kwargs):
        out += page.get(key, [])
    return out


class Sweep:
    def __init__(self, run: Context, apply: bool) -> None:
        self.run = run
        self.apply = apply
        self.live = LiveBuilds(run)
        self.lines: list[str] = []
        self.counts = {"instance": 0, "key pair": 0, "security group": 0, "image": 0, "left": 0}

    def _act(self, kind: str, head: str, why: str, act: Callable[[], object], done: str, by_hand: str) -> None:
        self.counts[kind] += 1
        if not self.apply:
            self.lines.append(f"{head}  would be {done}: {why}")
            return
        try:
            act()
        except KilnError as err:
            self.counts[kind] -= 1
            self.counts["left"] += 1
            self.lines.append(f"{head}  left: {err}; remove it by hand: {by_hand}")
            return
        self.lines.append(f"{head}  {done}: {why}")

    def region(self, region: str) -> None:
        provider = self.run.provider
        ec2 = provider.client("ec2", region)
        reservations = provider.call(
            f"ec2 DescribeInstances (kiln builds) in {region}",
            lambda: _pages(
                ec2,
                "describe_instances",
                "Reservations",
                Filters=[
                    {"Name": "tag:Name", "Values": [f"{RUN_TAG}*"]},
                    {"Name": "instance-state-name", "Values": STATES},
                ],
            ),
        )
        staying: set[str] = set()  # key pairs and groups of instances that stay
        ended: list[str] = []
        for r in reservations:
            for i in r.get("Instances", []):
                name = next((t["Value"] for t in i.get("Tags", []) if t["Key"] == "Name"), "")
                uses = {i.get("KeyName", ""), *(g["GroupId"] for g in i.get("SecurityGroups", []))}
                head = f"{region}  instance {i['InstanceId']} ({i['State']['Name']}, {name!r}, up {age(_iso(i))})"
                holder = self.live.of(region, name)
                if holder:
                    staying |= uses
                    self.lines.append(f"{head}  kept: its build is live (lease of {holder})")
                    continue
                iid = i["InstanceId"]

                def terminate(iid: str = iid) -> object:
                    return provider.call(
                        f"ec2 TerminateInstances {iid} in {region}", lambda: ec2.terminate_instances(InstanceIds=[iid])
                    )

                self._act(
                    "instance",
                    head,
                    "launched by Packer for kiln, and no live build holds it",
                    terminate,
                    "terminated",
                    f"aws ec2 terminate-instances --region {region} --instance-ids {iid}",
                )
                ended.append(iid)
        if self.apply and ended:
            # A security group is free only once its instances have ended.
            waiter = ec2.get_waiter("instance_terminated")
            provider.call(
                f"ec2 DescribeInstances (waiting for {len(ended)} to end) in {region}",
                lambda: waiter.wait(InstanceIds=ended, WaiterConfig={"Delay": 5, "MaxAttempts": 60}),
            )
        busy = self.live.any(region)
        self._groups(region, ec2, staying, busy)
        self._keys(region, ec2, staying, busy)
        found, removed = orphan_lines(self.run, region, self.apply, self.live)
        self.lines += found
        self.counts["image"] += removed

    def _groups(self, region: str, ec2: Any, staying: set[str], busy: str | None) -> None:
        provider = self.run.provider
        groups = provider.call(
            f"ec2 DescribeSecurityGroups ({TEMPORARY}*) in {region}",
            lambda: _pages(
                ec2,
                "describe_security_groups",
                "SecurityGroups",
                Filters=[{"Name": "group-name", "Values": [f"{TEMPORARY}*"]}],
            ),
        )
        for g in groups:
            gid, name = g["GroupId"], g["GroupName"]
            head = f"{region}  security group {gid} ({name})"
            if gid in staying or busy:
                self.lines.append(f"{head}  kept: {_why_kept(gid in staying, busy)}")
                continue

            def delete(gid: str = gid) -> object:
                return provider.call(
                    f"ec2 DeleteSecurityGroup {gid} in {region}", lambda: ec2.delete_security_group(GroupId=gid)
                )

            self._act(
                "security group",
                head,
                "Packer's temporary group, and no kiln build is live in the region",
                delete,
                "deleted",
                f"aws ec2 delete-security-group --region {region} --group-id {gid} (once no instance uses it)",
            )

    def _keys(self, region: str, ec2: Any, staying: set[str], busy: str | None) -> None:
        provider = self.run.provider
        pairs = provider.call(f"ec2 DescribeKeyPairs in {region}", lambda: ec2.describe_key_pairs().get("KeyPairs", []))
        for k in pairs:
            name = str(k.get("KeyName", ""))
            if not name.startswith((TEMPORARY, TARGET_KEYS)):
                continue
            head = f"{region}  key pair {name}"
            if name in staying or busy:
                self.lines.append(f"{head}  kept: {_why_kept(name in staying, busy)}")
                continue

            def delete(name: str = name) -> object:
                return provider.call(f"ec2 DeleteKeyPair {name} in {region}", lambda: ec2.delete_key_pair(KeyName=name))

            self._act(
                "key pair",
                head,
                "a build's temporary key pair, and no kiln build is live in the region",
                delete,
                "deleted",
                f"aws ec2 delete-key-pair --region {region} --key-name {name}",
            )

    def summary(self) -> str:
        c = self.counts
        what = (
            f"{c['instance']} instance(s), {c['key pair']} key pair(s), {c['security group']} security group(s),"
            f" {c['image']} image(s) without a fingerprint"
        )
        if not self.apply:
            return f"cleanup: {what} would be removed; run again with apply=1 to do it"
        left = f"; {c['left']} left (see above)" if c["left"] else ""
        return f"cleanup: {what} removed{left}"


def _iso(instance: dict[str, Any]) -> str:
    launched = instance.get("LaunchTime")
    return launched.strftime("%Y-%m-%dT%H:%M:%S") if launched is not None else ""


def _why_kept(in_use: bool, busy: str | None) -> str:
    if in_use:
        return "an instance of a live build uses it"
    return f"a kiln build is live in the region (lease of {busy}); Packer does not name these after their build"


def cleanup_command(run: Context, regions: list[str], apply_text: str) -> str:
    if apply_text not in ("", "0", "1"):
        raise KilnError(
            f"variable apply: {apply_text!r} is not valid; apply=1 removes what is listed, apply=0 (the default) only lists"
        )
    sweep = Sweep(run, apply_text == "1")
    for region in regions:
        sweep.region(region)
    return "\n".join([*sweep.lines, sweep.summary()]) + "\n"
