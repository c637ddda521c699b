"""`doit validate`: the pre-flight before spending money. One row per check: Packer, the
identity the credentials resolve to, the build instance profile, the secrets bucket, and per
region that it answers and that the configured network (or a default VPC) exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from tasks.errors import BuildFailed, KilnError

if TYPE_CHECKING:
    from tasks.fleet.context import Context


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
    from tasks.packer_bin import packer_path, packer_version, uses_plugins

    if not uses_plugins():
        return f"{packer_path()} version {packer_version()} (amazon, azure and ansible built in: no plugins needed)"
    return f"{packer_path()} version {packer_version()} (plugins from packer/plugins.toml, installed by packer init)"


def plugins(run: Context) -> str:
    """Which of the catalog's plugins this Packer has, and whether the ones this provider's
    templates use are among them."""
    from tasks.build.packer_plugins import CATALOG, in_use, installed, needed
    from tasks.inputs.render import render_text
    from tasks.packer_bin import packer_path, packer_version

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


def network(run: Context, region: str) -> str:
    """The package file's network in the region: the VPC, the subnet and the security groups
    exist and belong together, and what its ssh_interface needs is there."""
    provider = run.provider
    ec2 = provider.client("ec2", region)
    package = run.customer.package(region) if run.options.provider == "aws" else {}
    shown = f"customers/{run.options.customer}/package/{region}.toml"

    def describe(what: str, **kwargs: Any) -> list[dict[str, Any]]:
        op = {
            "Vpcs": ec2.describe_vpcs,
            "Subnets": ec2.describe_subnets,
            "SecurityGroups": ec2.describe_security_groups,
        }[what]
        found: list[dict[str, Any]] = provider.call(f"ec2 Describe{what} in {region}", lambda: op(**kwargs)).get(
            what, []
        )
        return found

    vpc, subnet = package.get("vpc_id"), package.get("subnet_id")
    details: list[str] = []
    if vpc:
        if not describe("Vpcs", Filters=[{"Name": "vpc-id", "Values": [vpc]}]):
            raise KilnError(f"{shown}: vpc_id {vpc} does not exist in {region}; fix it or run doit init-region")
        details.append(f"vpc {vpc}")
    public: bool | None = None
    if subnet:
        subnets = describe("Subnets", Filters=[{"Name": "subnet-id", "Values": [subnet]}])
        if not subnets:
            raise KilnError(f"{shown}: subnet_id {subnet} does not exist in {region}; fix it or run doit init-region")
        own = str(subnets[0]["VpcId"])
        if vpc and own != vpc:
            raise KilnError(
                f"{shown}: subnet_id {subnet} belongs to {own}, not to vpc_id {vpc}; use a subnet of {vpc}"
                f' (or vpc_id = "{own}")'
            )
        vpc, public = own, bool(subnets[0].get("MapPublicIpOnLaunch"))
        details.append(f"subnet {subnet}{'' if public else ' (private)'}")
    if not vpc:
        default = describe("Vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])
        if not default:
            raise KilnError(
                f"{shown}: missing, and {region} has no default VPC; run doit init-region region={region} vpc=..."
            )
        vpc = str(default[0]["VpcId"])
        details.append(
            f"default vpc {vpc}" + (" (the sandbox ignores package files)" if run.options.provider == "sandbox" else "")
        )
    groups = list(package.get("security_group_ids", []))
    if groups:
        found = {
            str(g["GroupId"]): str(g.get("VpcId", ""))
            for g in describe("SecurityGroups", Filters=[{"Name": "group-id", "Values": groups}])
        }
        for group in groups:
            if group not in found:
                raise KilnError(f"{shown}: security_group_ids: {group} does not exist in {region}")
            if found[group] != vpc:
                of = f"subnet_id {subnet}" if subnet else ("vpc_id" if package.get("vpc_id") else "the default VPC")
                raise KilnError(
                    f"{shown}: security_group_ids: {group} belongs to {found[group]}, not to {vpc} ({of});"
                    f" an instance takes only groups of its own VPC: use a group of {vpc}"
                )
        details.append(f"security groups {', '.join(groups)}")
    iface = package.get("ssh_interface")
    associate = package.get("associate_public_ip_address")
    if iface == "public_ip" and (associate is False or (associate is None and public is False)):
        raise KilnError(
            f'{shown}: ssh_interface = "public_ip" but the instance gets no public address'
            f" ({'associate_public_ip_address = false' if associate is False else f'subnet {subnet} is private'});"
            " use private_ip (through a VPN) or session_manager, or associate_public_ip_address = true"
        )
    if iface == "session_manager":
        import shutil

        if shutil.which("session-manager-plugin") is None:
            raise KilnError(
                f'{shown}: ssh_interface = "session_manager" needs AWS\'s session-manager-plugin on PATH where kiln'
                " runs (Packer forwards SSH through an SSM session with it); install it, or use private_ip"
            )
        details.append(f"ssh through Session Manager (instance profile {run.customer.conf['instance_profile']})")
    elif iface:
        details.append(f"ssh over {iface}")
    return ", ".join(details)


def validate_command(run: Context) -> str:
    provider = run.provider
    conf = run.customer.conf
    checks: list[Check] = []
    if _run(checks, "packer", "PATH", _packer):
        from tasks.packer_bin import uses_plugins

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
            f"{len(failed)} of {len(checks)} checks failed; first: {failed[0].name} ({failed[0].where}):"
            f" {failed[0].detail}"
        )
    return out
