"""`doit init-region`: a region's network file from what the region has, checked, never clobbered."""

from __future__ import annotations

import tomllib

from conftest import Kiln, failure_line


def test_init_region_writes_the_default_network(kiln: Kiln) -> None:
    proc = kiln.doit("init-region", "provider=sandbox", "region=eu-west-1")
    path = kiln.root / "customers/paxata/package/eu-west-1.toml"
    written = tomllib.loads(path.read_text())
    assert "wrote customers/paxata/package/eu-west-1.toml" in proc.stdout
    ec2 = kiln.ec2("eu-west-1")
    vpc = ec2.describe_vpcs(VpcIds=[written["vpc_id"]])["Vpcs"][0]
    assert vpc["IsDefault"]
    subnet = ec2.describe_subnets(SubnetIds=[written["subnet_id"]])["Subnets"][0]
    assert subnet["VpcId"] == written["vpc_id"] and subnet["MapPublicIpOnLaunch"]
    assert "already up to date" in kiln.doit("init-region", "provider=sandbox", "region=eu-west-1").stdout

    # A file with other values is kept unless force=1.
    path.write_text('vpc_id = "vpc-0123456789abcdef0"\nsubnet_id = "subnet-0123456789abcdef0"\n')
    refused = kiln.doit("init-region", "provider=sandbox", "region=eu-west-1", code=3)
    assert "add force=1 to overwrite" in failure_line(refused.stderr, "eu-west-1.toml")
    assert "vpc-0123456789abcdef0" in path.read_text()
    kiln.doit("init-region", "provider=sandbox", "region=eu-west-1", "force=1")
    assert tomllib.loads(path.read_text()) == written


def test_init_region_checks_given_ids(kiln: Kiln) -> None:
    proc = kiln.doit("init-region", "provider=sandbox", "region=eu-west-1", "vpc=vpc-00000000000000000", code=3)
    assert "variable vpc: vpc-00000000000000000 does not exist in eu-west-1" in failure_line(proc.stderr, "vpc")
    proc = kiln.doit("init-region", "provider=sandbox", "region=eu-west-1,us-east-1", code=3)
    assert "exactly one region" in failure_line(proc.stderr, "region")
    assert not (kiln.root / "customers/paxata/package/eu-west-1.toml").exists()
