"""`doit init-region region=R [vpc=] [subnet=]`: write customers/<c>/package/<R>.toml from what the
region has (its default VPC and a public subnet) or from the ids given, checked to exist."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from tasks.errors import KilnError

if TYPE_CHECKING:
    from tasks.fleet.context import Context


def _describe(run: Context, region: str, what: str, **kwargs: Any) -> list[dict[str, Any]]:
    ec2 = run.provider.client("ec2", region)
    op = {"Vpcs": ec2.describe_vpcs, "Subnets": ec2.describe_subnets}[what]
    found: list[dict[str, Any]] = run.provider.call(f"ec2 Describe{what} in {region}", lambda: op(**kwargs)).get(
        what, []
    )
    return found


def discover(run: Context, region: str, vpc: str | None, subnet: str | None) -> dict[str, Any]:
    if subnet and not vpc:  # a subnet names its VPC
        found = _describe(run, region, "Subnets", Filters=[{"Name": "subnet-id", "Values": [subnet]}])
        if not found:
            raise KilnError(f"variable subnet: {subnet} does not exist in {region}")
        vpc = str(found[0]["VpcId"])
    if vpc:
        if not _describe(run, region, "Vpcs", Filters=[{"Name": "vpc-id", "Values": [vpc]}]):
            raise KilnError(f"variable vpc: {vpc} does not exist in {region}")
    else:
        default = _describe(run, region, "Vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])
        if not default:
            raise KilnError(
                f"variable vpc: {region} has no default VPC; name one with vpc=vpc-... and subnet=subnet-..."
            )
        vpc = str(default[0]["VpcId"])
    if subnet:
        found = _describe(run, region, "Subnets", Filters=[{"Name": "subnet-id", "Values": [subnet]}])
        if not found or found[0]["VpcId"] != vpc:
            raise KilnError(f"variable subnet: {subnet} does not exist in {vpc} ({region})")
    else:
        subnets = _describe(run, region, "Subnets", Filters=[{"Name": "vpc-id", "Values": [vpc]}])
        public = sorted(
            (s for s in subnets if s.get("MapPublicIpOnLaunch")), key=lambda s: (s["AvailabilityZone"], s["SubnetId"])
        )
        if not public:
            raise KilnError(f"variable subnet: {vpc} in {region} has no public subnet; name one with subnet=subnet-...")
        subnet = str(public[0]["SubnetId"])
        found = public[:1]
    # A private subnet is reached through a VPN (private_ip) or Session Manager: no public address.
    reachable = bool(found[0].get("MapPublicIpOnLaunch"))
    return {
        "vpc_id": vpc,
        "subnet_id": subnet,
        "ssh_interface": "public_ip" if reachable else "private_ip",
        "associate_public_ip_address": reachable,
        "security_group_ids": [],
        "temporary_security_group_source_cidrs": [],
    }


# Each key with the comment init-region writes above it.
COMMENTS = {
    "vpc_id": "The VPC builds run in.",
    "subnet_id": "The subnet of vpc_id the build instance starts in; a private one is reached through a VPN"
    " (ssh_interface = private_ip) or Session Manager.",
    "ssh_interface": "How Packer's SSH reaches the instance: public_ip, private_ip (from inside the VPC or through"
    " a VPN), or session_manager (Packer forwards SSH through SSM: the instance profile needs"
    " AmazonSSMManagedInstanceCore, and session-manager-plugin must be on PATH where kiln runs).",
    "associate_public_ip_address": "Whether the build instance gets a public address (false in a private subnet).",
    "security_group_ids": "Existing security groups of vpc_id for the build instance; empty: Packer makes a"
    " temporary group.",
    "temporary_security_group_source_cidrs": "Without security_group_ids: the CIDRs Packer's temporary group"
    " admits on SSH (e.g. your VPN's); empty: 0.0.0.0/0.",
}


def _comment(text: str) -> str:
    import textwrap

    return "".join(f"# {line}\n" for line in textwrap.wrap(text, 98))


def key_text(key: str, value: Any) -> str:
    return _comment(COMMENTS[key]) + tomli_w.dumps({key: value})


def init_region_command(run: Context, named: dict[str, str]) -> str:
    if "region" not in named or len(run.options.regions) != 1:
        raise KilnError("variable region: name exactly one region, e.g. doit init-region region=eu-west-1")
    region = run.options.regions[0]
    values = discover(run, region, named.get("vpc") or None, named.get("subnet") or None)
    rel = f"customers/{run.options.customer}/package/{region}.toml"
    path = run.catalog.root / rel
    text = f"# Network placement for builds in {region} (not part of any fingerprint); written by doit init-region.\n"
    text += "".join(f"\n{key_text(k, v)}" for k, v in values.items())
    if path.exists() and run.options.force != "1":
        from tasks.catalog.schema import read_toml

        old = run.customer.package(region)
        network = {k: values[k] for k in ("vpc_id", "subnet_id")}
        if {k: old.get(k) for k in network} != network:
            raise KilnError(
                f"{rel}: exists with other values ({', '.join(f'{k}={v}' for k, v in sorted(old.items()))}); add force=1 to overwrite"
            )
        # The same network: keys the file lacks (it predates them) are added with their
        # defaults, everything it says is kept as written.
        missing = [k for k in values if k not in read_toml(path, rel)]
        if not missing:
            return f"{rel} is already up to date:\n{path.read_text()}"
        added = "".join(f"\n{key_text(k, values[k])}" for k in missing)
        _write(path, path.read_text().rstrip("\n") + "\n" + added)
        return f"added {', '.join(missing)} to {rel}:\n{added.lstrip()}"
    _write(path, text)
    return f"wrote {rel}:\n{text}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
