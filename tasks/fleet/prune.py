"""`doit prune [keep=N] [apply=1]`: old images of each role, distro and region beyond the newest
N, listed (the default) or deregistered with their snapshots (apply=1).

Never one that is current, named in an export, or used by a launch template, a launch
configuration (and so an Auto Scaling group) or an instance: each held back with the reason.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import KilnError
from ..providers.base import CloudImage
from ..rootfs import human, release, tree_size
from .inventory import age, mainline

if TYPE_CHECKING:
    from ..engine import Run


@dataclass
class Verdict:
    image: CloudImage
    group: str
    action: str  # keep | held | prune
    why: str


def _pages(client: Any, op: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator(op).paginate(**kwargs):
        out += page.get(key, [])
    return out


def users(run: Run, region: str, candidates: set[str]) -> dict[str, str]:
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


def exported(run: Run, distros: set[str], region: str) -> set[str]:
    from ..exports import export_paths

    ids: set[str] = set()
    for distro in distros:
        for path in export_paths(run, distro, region).values():
            try:
                text = path.read_text()
            except OSError:
                continue
            ids.update(word.strip('"') for word in text.replace("=", " ").split() if word.strip('"').startswith("ami-"))
    return ids


def plan(run: Run, region: str, keep: int) -> list[Verdict]:
    o = run.options
    images = [
        i
        for i in run.provider.our_images(region)
        if i.fingerprint and i.tags.get("customer") == o.customer and i.tags.get("kiln-role")
    ]
    groups: dict[str, list[CloudImage]] = {}
    for image in images:
        groups.setdefault(f"{image.tags['kiln-role']}/{image.tags.get('distro-id', '?')}", []).append(image)
    distros = {i.tags.get("distro-id", "") for i in images}
    current = {i for d in distros for i in mainline(run, d, region).values()}
    in_exports = exported(run, distros, region)
    verdicts: list[Verdict] = []
    for group, members in sorted(groups.items()):
        # Creation times have whole seconds; kiln's names end in a millisecond stamp.
        members.sort(key=lambda i: (i.created, i.name, i.image_id), reverse=True)
        for n, image in enumerate(members):
            if n < keep:
                verdicts.append(Verdict(image, group, "keep", f"one of the newest {keep}"))
            elif image.image_id in current:
                verdicts.append(Verdict(image, group, "held", "current in the results database"))
            elif image.image_id in in_exports:
                verdicts.append(Verdict(image, group, "held", "named in an export file"))
            else:
                verdicts.append(Verdict(image, group, "prune", ""))
    # Root filesystem layers launch nothing; cloud images may be launched from.
    candidates = {v.image.image_id for v in verdicts if v.action == "prune"}
    if o.provider == "local":
        held: dict[str, str] = {}
    elif o.provider == "azure":
        held = run.provider.images_in_use(region, candidates)
    else:
        held = users(run, region, candidates)
    for v in verdicts:
        if v.image.image_id in held:
            v.action, v.why = "held", f"used by {held[v.image.image_id]}"
    return verdicts


def prune_command(run: Run, regions: list[str], keep_text: str, apply: bool) -> str:
    if not keep_text.isdigit() or int(keep_text) < 1:
        raise KilnError(
            f"variable keep: {keep_text!r} is not valid; keep=N with N >= 1 (the newest N of each role stay)"
        )
    keep = int(keep_text)
    o = run.options
    local = o.provider == "local"
    account = run.provider.account()
    lines: list[str] = []
    pruned = candidates = 0
    used = freed = 0
    for region in regions:
        for v in plan(run, region, keep):
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
            if v.action == "keep":
                lines.append(f"{head}  keep: {v.why}")
            elif v.action == "held":
                lines.append(f"{head}  held back: {v.why}")
            elif apply:
                run.provider.deregister(region, image.image_id)
                run.results.set_state(o.provider, account, region, image.image_id, "pruned")
                pruned += 1
                freed += size
                lines.append(f"{head}  {'removed' if local else 'deregistered'} ({what})")
            else:
                candidates += 1
                freed += size
                lines.append(f"{head}  would be {'removed' if local else 'deregistered'} ({what})")
    space = ""
    if local:
        for path in run.provider.leftovers():
            size = tree_size(path)
            used += size
            freed += size
            head = f"local  {'(no image)':<28} {path.name:<36} {'':>5} {human(size):>9}"
            if apply:
                release(path)
                shutil.rmtree(path, ignore_errors=True)
                pruned += 1
                lines.append(f"{head}  removed (a failed or unfinished layer)")
            else:
                candidates += 1
                lines.append(f"{head}  would be removed (a failed or unfinished layer)")

        space = f"; layers use {human(used)}, {human(freed)} {'freed' if apply else 'would be freed'}"
    if apply:
        lines.append(f"{pruned} image(s) {'removed' if local else 'deregistered'}{space}")
    else:
        lines.append(
            f"{candidates} image(s) would be {'removed' if local else 'deregistered'}{space}; run again with apply=1 to do it"
        )
    return "\n".join(lines) + "\n"
