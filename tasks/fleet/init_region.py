"""`doit init-region region=R [vpc=] [subnet=]`: write customers/<c>/package/<R>.toml from what the
region has (its default VPC and a public subnet) or from the ids given, checked to exist."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tomli_w

from ..errors import KilnError

if TYPE_CHECKING:
    from ..engine import Run


def _describe(run: Run, region: str, what: str, **kwargs: Any) -> list[dict[str, Any]]:
    ec2 = run.provider.client("ec2", region)
    op = {"Vpcs": ec2.describe_vpcs, "Subnets": ec2.describe_subnets}[what]
    found: list[dict[str, Any]] = run.provider.call(f"ec2 Describe{what} in {region}", lambda: op(**kwargs)).get(
        what, []
    )
    return found


def discover(run: Run, region: str, vpc: str | None, subnet: str | None) -> dict[str, str]:
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
    return {"vpc_id": vpc, "subnet_id": subnet}


def init_region_command(run: Run, named: dict[str, str]) -> str:
    if "region" not in named or len(run.options.regions) != 1:
        raise KilnError("variable region: name exactly one region, e.g. doit init-region region=eu-west-1")
    region = run.options.regions[0]
    values = discover(run, region, named.get("vpc") or None, named.get("subnet") or None)
    rel = f"customers/{run.options.customer}/package/{region}.toml"
    path = run.catalog.root / rel
    text = f"# Network placement for builds in {region} (not part of any fingerprint); written by doit init-region.\n"
    text += tomli_w.dumps(values)
    if path.exists():
        old = run.customer.package(region)
        if old == values:
            return f"{rel} is already up to date:\n{text}"
        if run.options.force != "1":
            raise KilnError(
                f"{rel}: exists with other values ({', '.join(f'{k}={v}' for k, v in sorted(old.items()))}); add force=1 to overwrite"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return f"wrote {rel}:\n{text}"
