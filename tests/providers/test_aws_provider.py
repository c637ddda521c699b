"""provider=aws, the default, through boto3's standard chain (here: environment keys) and an
endpoint override pointed at the sandbox's moto server: the real AWS code path on loopback."""

from __future__ import annotations

import re

from conftest import Kiln, git_status


def test_aws_provider_builds_with_customer_network_and_writes_legacy_export(kiln: Kiln) -> None:
    endpoint = kiln.doit("sandbox").stdout.strip()
    ec2 = kiln.ec2()
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    (kiln.root / "customers/paxata/package/us-east-1.toml").write_text(f'vpc_id = "{vpc}"\nsubnet_id = "{subnet}"\n')
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    # The root has no playbook, so it needs no SSH and builds against moto as on AWS.
    kiln.doit("base-vmi", "region=us-east-1", env=env)
    assert kiln.builds() == 1
    root = kiln.current("base-vmi")
    # Packer ran in the customer's subnet, from the var file: the placement is not rendered.
    work = kiln.state / "work/aws/paxata/debian-12/us-east-1/base-vmi"
    variables = (work / "kiln.pkrvars.hcl").read_text()
    assert f'subnet_id = "{subnet}"' in variables
    assert 'instance_profile = "packer-build"' in variables
    assert "testing" not in variables, "credentials reach Packer through its environment only"
    row = kiln.rows("SELECT * FROM images WHERE image_id=?", (root,))[0]
    assert (row["provider"], row["account"]) == ("aws", "123456789012")

    # The legacy properties file beside distro.toml, for aws only; with the endpoint
    # overridden (ids that are not AWS's) it goes to the same path under the state folder.
    assert not (kiln.root / "distros/debian-12/us-east-1.vmi.properties").exists()
    export = kiln.state / "exports/endpoint-override/distros/debian-12/us-east-1.vmi.properties"
    lines = [line for line in export.read_text().splitlines() if not line.startswith("#")]
    assert lines == [f"base-vmi={root}"]
    changed = git_status(kiln.root).split()
    assert changed == ["M", "customers/paxata/package/us-east-1.toml"]

    # The export is output, not input: it changes no fingerprint.
    kiln.doit("base-vmi", "region=us-east-1", env=env)
    assert kiln.builds() == 1

    # Roles with a playbook provision over SSH on AWS; the template stays region-free.
    kiln.doit("_render:core/debian-12/aws/paxata", "region=us-east-1", env=env)
    rendered = (kiln.state / "rendered/aws/paxata/debian-12/core.pkr.hcl").read_text()
    assert 'provisioner "ansible"' in rendered
    assert re.search(r'communicator\s+= "ssh"', rendered)
    assert subnet not in rendered and "us-east-1" not in rendered
