"""`doit prune [keep=N] [apply=1]`: the lifecycle policy (tasks/fleet/lifecycle.py) over kiln's images
of each role, distro and region: each listed with its action and why (the default), or acted on
(apply=1): EnableImageDeprecation, DisableImage, DeregisterImage with its snapshots.

Never one that is current, named in an export, or used by a launch template, a launch
configuration (and so an Auto Scaling group) or an instance: each held back with the reason.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.build.rootfs import human, release, tree_size
from tasks.errors import KilnError
from tasks.fleet.inventory import age
from tasks.fleet.lifecycle import Facts, Policy, created_at, decide, policy
from tasks.fleet.orphans import orphan_lines
from tasks.fleet.sharing import forget
from tasks.providers.base import CloudImage
from tasks.records.current import mainline

if TYPE_CHECKING:
    from tasks.fleet.context import Context


@dataclass
class Verdict:
    image: CloudImage
    group: str
    action: str  # keep | held | deprecate | disable | deregister
    why: str


def _pages(client: Any, op: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator(op).paginate(**kwargs):
        out += page.get(key, [])
    return out


def users(run: Context, region: str, candidates: set[str]) -> dict[str, str]:
    """image id -> what uses it, for the candidates: launch templates, launch configurations and
    the Auto Scaling groups that launch from them, instances."""
    if not candidates:
        return {}
    provider = run.provider
    ec2 = provider.client("ec2", region)
    asg = provider.client("autoscaling", region)
    held: dict[str, str] = {}
    groups = provider.call(
        f"autoscaling DescribeAutoScalingGroups in {region}",
        lambda: _pages(asg, "describe_auto_scaling_groups", "AutoScalingGroups"),
    )

    def groups_of(kind: str, name: str) -> str:
        names = [
            g["AutoScalingGroupName"]
            for g in groups
            if g.get("LaunchConfigurationName") == name
            or (g.get("LaunchTemplate") or {}).get(kind) == name
            or ((g.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {})
            .get("LaunchTemplateSpecification", {})
            .get(kind)
            == name
        ]
        return f", used by Auto Scaling group {', '.join(names)}" if names else ""

    templates = provider.call(
        f"ec2 DescribeLaunchTemplates in {region}", lambda: _pages(ec2, "describe_launch_templates", "LaunchTemplates")
    )
    for t in templates:
        versions = provider.call(
            f"ec2 DescribeLaunchTemplateVersions {t['LaunchTemplateId']} in {region}",
            lambda t=t: ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"]),
        )
        for v in versions.get("LaunchTemplateVersions", []):
            image = (v.get("LaunchTemplateData") or {}).get("ImageId")
            if image in candidates and image not in held:
                used = groups_of("LaunchTemplateId", t["LaunchTemplateId"]) or groups_of(
                    "LaunchTemplateName", t["LaunchTemplateName"]
                )
                held[image] = f"launch template {t['LaunchTemplateName']} version {v['VersionNumber']}{used}"
    configs = provider.call(
        f"autoscaling DescribeLaunchConfigurations in {region}",
        lambda: _pages(asg, "describe_launch_configurations", "LaunchConfigurations"),
    )
    for c in configs:
        image = c.get("ImageId")
        if image in candidates and image not in held:
            held[image] = f"launch configuration {c['LaunchConfigurationName']}" + groups_of(
                "LaunchConfigurationName", c["LaunchConfigurationName"]
            )
    reservations = provider.call(
        f"ec2 DescribeInstances in {region}",
        lambda: _pages(
            ec2,
            "describe_instances",
            "Reservations",
            Filters=[
                {"Name": "image-id", "Values": sorted(candidates)},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
            ],
        ),
    )
    for r in reservations:
        for i in r.get("Instances", []):
            if i.get("ImageId") in candidates and i["ImageId"] not in held:
                held[i["ImageId"]] = f"instance {i['InstanceId']} ({i.get('State', {}).get('Name', '?')})"
    return held


def exported(run: Context, distros: set[str], region: str) -> set[str]:
    ids: set[str] = set()
    for distro in distros:
        for path in run.exports.paths(distro, region).values():
            try:
                text = path.read_text()
            except OSError:
                continue
            ids.update(word.strip('"') for word in text.replace("=", " ").split() if word.strip('"').startswith("ami-"))
    return ids


def _deprecated(image: CloudImage, now: datetime) -> bool:
    """A deprecation time set, already past or within the hour (kiln sets the next minute)."""
    at = created_at(image.deprecation_time) if image.deprecation_time else None
    return at is not None and at <= now + timedelta(hours=1)


def _policy(run: Context, role: str, keep: int | None) -> Policy:
    known = run.catalog.roles.get(role)
    return policy(
        (run.customer.conf.path, run.customer.conf.get("lifecycle")),
        (known.conf.path, known.conf.get("lifecycle")) if known is not None else ("", None),
        keep,
    )


def plan(run: Context, region: str, keep: int | None, now: datetime | None = None) -> list[Verdict]:
    """The lifecycle policy's verdict on each of kiln's images of this customer in the region."""
    o = run.options
    now = now or datetime.now(UTC)
    provider = run.provider
    listing = (
        provider.lifecycle_images(region) if hasattr(provider, "lifecycle_images") else provider.our_images(region)
    )
    images = [i for i in listing if i.fingerprint and i.tags.get("customer") == o.customer and i.tags.get("kiln-role")]
    groups: dict[str, list[CloudImage]] = {}
    for image in images:
        groups.setdefault(f"{image.tags['kiln-role']}/{image.tags.get('distro-id', '?')}", []).append(image)
    distros = {i.tags.get("distro-id", "") for i in images}
    current = {
        i
        for d in distros
        for i in mainline(
            run.results, run.options.provider, run.options.customer, run.catalog.topological(), d, region
        ).values()
    }
    in_exports = exported(run, distros, region)
    # Channels, once they exist, hold their images here too.
    held = {i.image_id: "current in the results database" for i in images if i.image_id in current}
    held.update(
        {i.image_id: "named in an export file" for i in images if i.image_id in in_exports and i.image_id not in held}
    )
    from tasks.records.channels import held as on_channels

    for image_id, why in on_channels(run.results, o.provider, o.customer, region).items():
        held.setdefault(image_id, why)
    retire = o.provider in ("aws", "sandbox")  # local layers and Azure managed images: only removal

    verdicts: list[Verdict] = []
    for group, members in sorted(groups.items()):
        # Creation times have whole seconds; kiln's names end in a millisecond stamp.
        members.sort(key=lambda i: (i.created, i.name, i.image_id), reverse=True)
        facts = [Facts(i.image_id, i.created, i.state, _deprecated(i, now), held.get(i.image_id)) for i in members]
        pol = _policy(run, members[0].tags["kiln-role"], keep)
        for image, d in zip(members, decide(facts, pol, now, retire), strict=True):
            verdicts.append(Verdict(image, group, d.action, d.why))
    # What something launches from is asked for only about the images with an action.
    candidates = {v.image.image_id for v in verdicts if v.action in ACTIONS}
    if o.provider == "local":  # a parent stays while a layer that stays sits on it
        used: dict[str, str] = provider.held_by_layers(candidates)
    elif o.provider == "azure":
        used = provider.images_in_use(region, candidates)
    else:
        used = users(run, region, candidates)
    for v in verdicts:
        if v.image.image_id in used:
            v.action, v.why = "held", f"used by {used[v.image.image_id]}"
    return verdicts


ACTIONS = ("deprecate", "disable", "deregister")


def prune_command(run: Context, regions: list[str], keep_text: str, apply: bool) -> str:
    if keep_text and (not keep_text.isdigit() or int(keep_text) < 1):
        raise KilnError(
            f"variable keep: {keep_text!r} is not valid; keep=N with N >= 1 (the newest N of each role stay)"
        )
    keep = int(keep_text) if keep_text else None
    o = run.options
    local = o.provider == "local"
    account = run.provider.account()
    lines: list[str] = []
    done = dict.fromkeys(ACTIONS, 0)
    used = freed = 0
    now = datetime.now(UTC)
    retire = o.provider in ("aws", "sandbox")  # launch permissions, deprecation: AWS's
    # Deprecation from the next whole minute: AWS takes no time in the past, and rounds to minutes.
    deprecate_at = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    for region in regions:
        for v in plan(run, region, keep, now):
            image = v.image
            width = 36 if local else 22
            head = f"{region}  {v.group:<28} {image.image_id:<{width}} {age(image.created):>5}"
            size = 0
            if local:
                size = tree_size(run.provider.tree(image.image_id))
                used += size
                head += f" {human(size):>9}"
            what = (
                "layer"
                if local
                else "managed image"
                if o.provider == "azure"
                else f"image, with {len(image.snapshot_ids)} snapshot(s)"
            )
            why = f": {v.why}" if v.why else ""
            if v.action == "keep":
                lines.append(f"{head}  keep: {v.why}")
            elif v.action == "held":
                lines.append(f"{head}  held back: {v.why}")
            elif v.action == "deregister":
                done["deregister"] += 1
                freed += size
                gone = "removed" if local else "deregistered"
                if apply:
                    run.provider.deregister(region, image.image_id)
                    run.results.set_state(o.provider, account, region, image.image_id, "pruned")
                    if retire:
                        forget(run, region, image.image_id)
                    lines.append(f"{head}  {gone} ({what}){why}")
                else:
                    lines.append(f"{head}  would be {gone} ({what}){why}")
            elif v.action == "disable":
                done["disable"] += 1
                if apply:
                    run.provider.disable(region, image.image_id)
                    run.results.set_state(o.provider, account, region, image.image_id, "disabled")
                    forget(run, region, image.image_id)  # AWS takes its launch permissions away
                    lines.append(f"{head}  disabled (no longer launches; EnableImage undoes it){why}")
                else:
                    lines.append(f"{head}  would be disabled{why}")
            elif v.action == "deprecate":
                done["deprecate"] += 1
                if apply:
                    run.provider.deprecate(region, image.image_id, deprecate_at)
                    lines.append(f"{head}  deprecated from {deprecate_at:%Y-%m-%d %H:%M} UTC{why}")
                else:
                    lines.append(f"{head}  would be deprecated{why}")
        if retire:  # images that lost their commit point (tasks/fleet/orphans.py)
            found, orphans = orphan_lines(run, region, apply)
            lines, done["deregister"] = lines + found, done["deregister"] + orphans
    space = ""
    if local:
        for path in run.provider.leftovers():
            size = tree_size(path)
            used += size
            freed += size
            head = f"local  {'(no image)':<28} {path.name:<36} {'':>5} {human(size):>9}"
            done["deregister"] += 1
            if apply:
                release(path)
                shutil.rmtree(path, ignore_errors=True)
                lines.append(f"{head}  removed (a failed or unfinished layer)")
            else:
                lines.append(f"{head}  would be removed (a failed or unfinished layer)")

        space = f"; layers use {human(used)}, {human(freed)} {'freed' if apply else 'would be freed'}"
    gone = "removed" if local else "deregistered"
    others = "" if local else f", {done['disable']} disabled, {done['deprecate']} deprecated"
    if apply:
        lines.append(f"{done['deregister']} image(s) {gone}{others}{space}")
    else:
        lines.append(f"{done['deregister']} image(s) would be {gone}{others}{space}; run again with apply=1 to do it")
    return "\n".join(lines) + "\n"
