"""Private-network builds: customers/<c>/package/<region>.toml says how Packer reaches the build
instance (ssh_interface, associate_public_ip_address, security_group_ids or the CIDRs of
Packer's temporary group); the values reach Packer's var file, `doit validate` checks that the
subnet, VPC and groups exist and belong together, and `doit init-region` writes every key.

provider=aws pointed at the sandbox's moto (as tests/providers/test_aws_provider.py): the package files
apply there, and the real Packer 1.6.6 launches with them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from conftest import Kiln, failure_line

PACKAGE = "customers/paxata/package/us-east-1.toml"


def aws(kiln: Kiln) -> dict[str, str]:
    endpoint = kiln.doit("sandbox").stdout.strip()
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def network(ec2: Any, cidr: str) -> tuple[str, str, str]:
    """A VPC with a private subnet and a security group: (vpc, subnet, group)."""
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("/16", "/24"), AvailabilityZone="us-east-1a")
    group = ec2.create_security_group(GroupName=f"builds-{cidr[:5]}", Description="builds", VpcId=vpc)
    return vpc, subnet["Subnet"]["SubnetId"], group["GroupId"]


def write(kiln: Kiln, text: str) -> None:
    (kiln.root / PACKAGE).write_text(text)


def validate_row(stdout: str, check: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(check))


def test_every_key_reaches_packer(kiln: Kiln) -> None:
    env = aws(kiln)
    ec2 = kiln.ec2()
    vpc, subnet, group = network(ec2, "10.10.0.0/16")
    write(
        kiln,
        f'vpc_id = "{vpc}"\nsubnet_id = "{subnet}"\nssh_interface = "private_ip"\n'
        f'associate_public_ip_address = false\nsecurity_group_ids = ["{group}"]\n',
    )
    kiln.doit("base-vmi", "region=us-east-1", env=env)
    work = kiln.state / "work/aws/paxata/debian-12/us-east-1/base-vmi"
    variables = (work / "kiln.pkrvars.hcl").read_text()
    for line in (
        f'vpc_id = "{vpc}"',
        f'subnet_id = "{subnet}"',
        'ssh_interface = "private_ip"',
        "associate_public_ip_address = false",
        f'security_group_ids = ["{group}"]',
    ):
        assert line in variables, variables
    # Packer (the real 1.6.6) launched the instance with them.
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(instances) == 1
    assert instances[0]["SubnetId"] == subnet
    assert [g["GroupId"] for g in instances[0]["SecurityGroups"]] == [group]
    assert "PublicIpAddress" not in instances[0]

    # Or the CIDRs Packer's temporary group admits (a VPN's), instead of existing groups.
    write(kiln, f'vpc_id = "{vpc}"\nsubnet_id = "{subnet}"\ntemporary_security_group_source_cidrs = ["10.8.0.0/16"]\n')
    kiln.doit("base-vmi", "region=us-east-1", "force=1", env=env)
    assert 'temporary_security_group_source_cidrs = ["10.8.0.0/16"]' in (work / "kiln.pkrvars.hcl").read_text()
    log = kiln.rows("SELECT log_path FROM builds ORDER BY id DESC LIMIT 1")[0]["log_path"]
    assert "from [10.8.0.0/16] in the temporary security groups" in Path(log).read_text()
    # Placement only: both builds have the same fingerprint.
    assert len({r["fingerprint"] for r in kiln.rows("SELECT fingerprint FROM images")}) == 1

    # The SSH settings are in the template of every role that provisions over SSH.
    kiln.doit("_render:core/debian-12/aws/paxata", "region=us-east-1", env=env)
    rendered = (kiln.state / "rendered/aws/paxata/debian-12/core.pkr.hcl").read_text()
    assert "ssh_interface = var.ssh_interface" in rendered
    assert "associate_public_ip_address           = var.associate_public_ip_address" in rendered


def test_session_manager_needs_an_instance_profile_and_the_plugin(kiln: Kiln) -> None:
    env = aws(kiln)
    write(kiln, 'ssh_interface = "session_manager"\nassociate_public_ip_address = false\n')
    proc = kiln.doit("validate", "provider=aws", "region=us-east-1", env=env, code=1)
    row = validate_row(proc.stdout, "network")
    assert " FAIL " in row and "needs AWS's session-manager-plugin on PATH where kiln runs" in row
    assert "first: network (us-east-1): customers/paxata/package/us-east-1.toml: ssh_interface" in proc.stderr

    conf = kiln.root / "customers/paxata/customer.toml"
    conf.write_text(conf.read_text().replace('instance_profile = "packer-build"', 'instance_profile = ""'))
    proc = kiln.doit("base-vmi", "region=us-east-1", env=env, code=3)
    line = failure_line(proc.stderr, PACKAGE)
    assert 'ssh_interface = "session_manager" needs an instance profile with SSM permissions' in line
    assert kiln.builds() == 0


def test_validate_refuses_a_group_or_subnet_of_another_vpc(kiln: Kiln) -> None:
    env = aws(kiln)
    ec2 = kiln.ec2()
    vpc, subnet, group = network(ec2, "10.10.0.0/16")
    other_vpc, other_subnet, other_group = network(ec2, "10.20.0.0/16")
    args = ("validate", "provider=aws", "region=us-east-1")

    write(
        kiln,
        f'vpc_id = "{vpc}"\nsubnet_id = "{subnet}"\nssh_interface = "private_ip"\nsecurity_group_ids = ["{group}"]\n',
    )
    ok = validate_row(kiln.doit(*args, env=env).stdout, "network")
    assert f"vpc {vpc}, subnet {subnet} (private), security groups {group}, ssh over private_ip" in ok

    write(kiln, f'vpc_id = "{vpc}"\nsubnet_id = "{subnet}"\nsecurity_group_ids = ["{group}", "{other_group}"]\n')
    proc = kiln.doit(*args, env=env, code=1)
    line = failure_line(proc.stderr, "validate:")
    assert (
        f"{PACKAGE}: security_group_ids: {other_group} belongs to {other_vpc}, not to {vpc} (subnet_id {subnet});"
        f" an instance takes only groups of its own VPC: use a group of {vpc}"
    ) in line
    assert " FAIL " in validate_row(proc.stdout, "network")

    write(kiln, f'vpc_id = "{vpc}"\nsubnet_id = "{other_subnet}"\n')
    line = failure_line(kiln.doit(*args, env=env, code=1).stderr, "validate:")
    assert f"{PACKAGE}: subnet_id {other_subnet} belongs to {other_vpc}, not to vpc_id {vpc}" in line

    write(kiln, f'subnet_id = "{subnet}"\nsecurity_group_ids = ["sg-00000000000000000"]\n')
    line = failure_line(kiln.doit(*args, env=env, code=1).stderr, "validate:")
    assert f"{PACKAGE}: security_group_ids: sg-00000000000000000 does not exist in us-east-1" in line

    write(kiln, f'subnet_id = "{subnet}"\nssh_interface = "public_ip"\n')
    line = failure_line(kiln.doit(*args, env=env, code=1).stderr, "validate:")
    assert f'ssh_interface = "public_ip" but the instance gets no public address (subnet {subnet} is private)' in line


def test_package_values_are_checked_in_one_line(kiln: Kiln) -> None:
    env = aws(kiln)
    for text, wanted in (
        ('ssh_interface = "bastion"', "key 'ssh_interface' must be one of private_ip, public_ip, session_manager"),
        ('security_group_ids = ["default"]', "key 'security_group_ids': 'default' is not a security group id"),
        ('temporary_security_group_source_cidrs = ["10.8.0.0/33"]', "is not a CIDR"),
        ("associate_public_ip_address = 1", "key 'associate_public_ip_address' must be true or false"),
        (
            'security_group_ids = ["sg-1"]\ntemporary_security_group_source_cidrs = ["10.8.0.0/16"]',
            "security_group_ids and temporary_security_group_source_cidrs exclude each other",
        ),
    ):
        write(kiln, text + "\n")
        proc = kiln.doit("base-vmi", "region=us-east-1", env=env, code=3)
        assert wanted in failure_line(proc.stderr, PACKAGE), proc.stderr
        assert "Traceback" not in proc.stderr
    assert kiln.builds() == 0


def test_init_region_writes_every_key_with_a_comment(kiln: Kiln) -> None:
    path = kiln.root / "customers/paxata/package/eu-west-1.toml"
    proc = kiln.doit("init-region", "provider=sandbox", "region=eu-west-1")
    assert "wrote customers/paxata/package/eu-west-1.toml" in proc.stdout
    written = tomllib.loads(path.read_text())
    assert written["ssh_interface"] == "public_ip" and written["associate_public_ip_address"] is True
    assert written["security_group_ids"] == [] and written["temporary_security_group_source_cidrs"] == []
    text = path.read_text()
    for key in written:
        above = text.split(f"\n{key} =")[0].splitlines()[-1]
        assert above.startswith("# "), f"{key} has no comment"

    # A file from before these keys, on the same network: the keys are added, its lines kept.
    old = f'# ours\nvpc_id = "{written["vpc_id"]}"\nsubnet_id = "{written["subnet_id"]}"\n'
    path.write_text(old)
    proc = kiln.doit("init-region", "provider=sandbox", "region=eu-west-1")
    assert "added ssh_interface, associate_public_ip_address, security_group_ids," in proc.stdout
    assert path.read_text().startswith(old)
    assert tomllib.loads(path.read_text()) == written
    assert "already up to date" in kiln.doit("init-region", "provider=sandbox", "region=eu-west-1").stdout

    # A private subnet: reached over its private address, with none public.
    ec2 = kiln.ec2("eu-west-1")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    kiln.doit("init-region", "provider=sandbox", "region=eu-west-1", f"subnet={subnet}", "force=1")
    private = tomllib.loads(path.read_text())
    assert (private["vpc_id"], private["subnet_id"]) == (vpc, subnet)
    assert (private["ssh_interface"], private["associate_public_ip_address"]) == ("private_ip", False)
