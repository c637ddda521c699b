"""`doit validate`: the pre-flight before spending money. One row per check: Packer, the
identity the credentials resolve to, the build instance profile, the secrets bucket, and per
region that it answers and that the configured network (or a default VPC) exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from ..errors import BuildFailed, KilnError

if TYPE_CHECKING:
    from ..engine import Run


@dataclass
class Check:
    name: str
    where: str
    result: str  # ok | FAIL | skipped
    detail: str


def _run(checks: list[Check], name: str, where: str, fn: Callable[[], str], blocked: str | None = None) -> bool:
    if blocked:
        checks.append(Check(name, where, "skipped", blocked))
        return False
    try:
        checks.append(Check(name, where, "ok", fn()))
        return True
    except KilnError as err:
        checks.append(Check(name, where, "FAIL", str(err)))
        return False


def _packer() -> str:
    from ..packer_bin import packer_path, packer_version, uses_plugins

    if not uses_plugins():
        return f"{packer_path()} version {packer_version()} (amazon, azure and ansible built in: no plugins needed)"
    return f"{packer_path()} version {packer_version()} (plugins from packer/plugins.toml, installed by packer init)"


def plugins(run: Run) -> str:
    """Which of the catalog's plugins this Packer has, and whether the ones this provider's
    templates use are among them."""
    from ..packer_bin import packer_path, packer_version
    from ..packer_plugins import CATALOG, in_use, installed, needed
    from ..render import render_text

    catalog = run.catalog
    wanted: set[str] = set()
    for role in catalog.roles.values():
        for distro in run.options.distros:
            text = render_text(catalog, role, catalog.distros[distro], run.customer, run.render_as, role.playbook)
            wanted |= {p.name for p in needed(run.plugins.catalog, text)}
    versions = in_use(run.plugins.catalog, installed(packer_path()))
    parts, missing = [], []
    for p in run.plugins.catalog:
        state = versions[p.source]
        if state == "missing" and p.name in wanted:
            missing.append(p)
        use = "" if p.name in wanted else f", not used by provider={run.options.provider}"
        parts.append(f"{p.name} {'version unknown' if state == '?' else state}{use}")
    if missing:
        commands = "; ".join(p.install_command() for p in missing)
        raise KilnError(
            f"{CATALOG}: {', '.join(p.name for p in missing)} missing for Packer {packer_version()}"
            f" (provider={run.options.provider}); a build runs packer init, or install: {commands}"
        )
    return ", ".join(parts) if parts else f"{CATALOG} lists none"


def network(run: Run, region: str) -> str:
    provider = run.provider
    ec2 = provider.client("ec2", region)
    package = run.customer.package(region) if run.options.provider == "aws" else {}
    shown = f"customers/{run.options.customer}/package/{region}.toml"
    if package.get("vpc_id"):
        vpc = package["vpc_id"]
        found = provider.call(
            f"ec2 DescribeVpcs in {region}", lambda: ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
        )
        if not found.get("Vpcs"):
            raise KilnError(f"{shown}: vpc_id {vpc} does not exist in {region}; fix it or run doit init-region")
        detail = f"vpc {vpc}"
        if package.get("subnet_id"):
            subnet = package["subnet_id"]
            subnets = provider.call(
                f"ec2 DescribeSubnets in {region}",
                lambda: ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [subnet]}]),
            ).get("Subnets", [])
            if not subnets or subnets[0]["VpcId"] != vpc:
                raise KilnError(
                    f"{shown}: subnet_id {subnet} does not exist in vpc {vpc}; fix it or run doit init-region"
                )
            detail += f", subnet {subnet}"
        return detail
    vpcs = provider.call(
        f"ec2 DescribeVpcs in {region}",
        lambda: ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}]),
    ).get("Vpcs", [])
    if not vpcs:
        raise KilnError(
            f"{shown}: missing, and {region} has no default VPC; run doit init-region region={region} vpc=..."
        )
    return f"default vpc {vpcs[0]['VpcId']}" + (
        " (the sandbox ignores package files)" if run.options.provider == "sandbox" else ""
    )


def validate_command(run: Run) -> str:
    provider = run.provider
    conf = run.customer.conf
    checks: list[Check] = []
    if _run(checks, "packer", "PATH", _packer):
        from ..packer_bin import uses_plugins

        if uses_plugins():
            _run(checks, "plugins", "packer", partial(plugins, run))

    def identity() -> str:
        sts = provider.client("sts", "us-east-1")
        me = provider.call("sts GetCallerIdentity", sts.get_caller_identity)
        return f"{me['Arn']} (account {me['Account']})"

    blocked = None if _run(checks, "credentials", run.options.provider, identity) else "no usable credentials"

    def profile() -> str:
        name = str(conf["instance_profile"])
        iam = provider.client("iam", "us-east-1")

        def get() -> str:
            try:
                found = iam.get_instance_profile(InstanceProfileName=name)
            except iam.exceptions.NoSuchEntityException:
                raise KilnError(
                    f"customers/{run.options.customer}/customer.toml: instance_profile '{name}' does not exist in this account"
                ) from None
            roles = [r["RoleName"] for r in found["InstanceProfile"].get("Roles", [])]
            return f"{name} (role {', '.join(roles) or 'none: builds cannot read secrets'})"

        result: str = provider.call("iam GetInstanceProfile", get)
        return result

    _run(checks, "instance profile", "account", profile, blocked)
    bucket = conf.get("secrets_bucket")
    if bucket:

        def reachable() -> str:
            s3 = provider.client("s3", run.options.regions[0])

            def head() -> str:
                from botocore.exceptions import ClientError

                try:
                    s3.head_bucket(Bucket=bucket)
                except ClientError as err:
                    code = err.response.get("Error", {}).get("Code", "")
                    if code in ("404", "NoSuchBucket"):
                        raise KilnError(
                            f"customers/{run.options.customer}/customer.toml: secrets_bucket '{bucket}' does not exist"
                        ) from None
                    raise
                return f"s3://{bucket}"

            result: str = provider.call(f"s3 HeadBucket {bucket}", head)
            return result

        _run(checks, "secrets bucket", "account", reachable, blocked)
    for region in run.options.regions:

        def answers(region: str = region) -> str:
            ec2 = provider.client("ec2", region)
            zones = provider.call(f"ec2 DescribeAvailabilityZones in {region}", ec2.describe_availability_zones)
            return f"{len(zones.get('AvailabilityZones', []))} availability zones"

        ok = _run(checks, "region", region, answers, blocked)
        _run(
            checks,
            "network",
            region,
            partial(network, run, region),
            blocked or (None if ok else "region failed"),
        )
    table = [("check", "where", "result", "detail")] + [(c.name, c.where, c.result, c.detail) for c in checks]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    out = "".join(
        "  ".join([*(v.ljust(w) for v, w in zip(r[:3], widths, strict=True)), r[3]]).rstrip() + "\n" for r in table
    )
    failed = [c for c in checks if c.result == "FAIL"]
    if failed:
        import sys

        sys.stdout.write(out)
        raise BuildFailed(
            f"validate: {len(failed)} of {len(checks)} checks failed; first: {failed[0].name} ({failed[0].where})"
        )
    return out
