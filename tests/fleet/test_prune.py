"""`doit prune`: old images go, with their snapshots; never one something still launches from."""

from __future__ import annotations

from conftest import Kiln, sandbox_client

SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_prune_keeps_images_in_use_and_deletes_the_rest(kiln: Kiln) -> None:
    kiln.doit("core", *SANDBOX)
    kiln.doit("core", *SANDBOX, "force=1")
    kiln.doit("core", *SANDBOX, "force=1")
    kiln.doit("core", *SANDBOX, "force=1")
    cores = [r["image_id"] for r in kiln.rows("SELECT image_id FROM images WHERE role='core' ORDER BY id")]
    oldest, second, third, newest = cores
    ec2 = kiln.ec2()
    asg = sandbox_client("autoscaling", kiln.endpoint())
    template = ec2.create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": oldest, "InstanceType": "t3.small"}
    )["LaunchTemplate"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName="web-asg",
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"]},
        MinSize=0,
        MaxSize=1,
        AvailabilityZones=["us-east-1a"],
    )
    asg.create_launch_configuration(LaunchConfigurationName="legacy", ImageId=second, InstanceType="t3.small")
    instance = ec2.run_instances(ImageId=third, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    snapshots = {
        i["ImageId"]: [m["Ebs"]["SnapshotId"] for m in i["BlockDeviceMappings"] if "Ebs" in m]
        for i in ec2.describe_images(ImageIds=cores)["Images"]
    }

    listing = kiln.doit("prune", *SANDBOX, "keep=1").stdout
    assert f"{newest}" in listing and "keep: one of the newest 1" in listing
    assert "launch template web version 1, used by Auto Scaling group web-asg" in listing
    assert "launch configuration legacy" in listing
    assert f"instance {instance}" in listing
    assert "0 image(s) would be deregistered" in listing
    assert len(ec2.describe_images(ImageIds=cores)["Images"]) == 4, "listing must change nothing"

    ec2.terminate_instances(InstanceIds=[instance])
    asg.delete_launch_configuration(LaunchConfigurationName="legacy")
    applied = kiln.doit("prune", *SANDBOX, "keep=1", "apply=1").stdout
    assert "2 image(s) deregistered" in applied
    left = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert oldest in left and newest in left
    assert second not in left and third not in left
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    for gone in (second, third):
        assert not set(snapshots[gone]) & remaining, "a pruned image's snapshots must go too"
    assert {r["state"] for r in kiln.rows("SELECT state FROM images WHERE image_id IN (?, ?)", (second, third))} == {
        "pruned"
    }
    # The chain's current images were never candidates.
    assert kiln.doit("core", *SANDBOX).stderr.count("up to date") >= 3


def test_prune_refuses_a_bad_keep(kiln: Kiln) -> None:
    proc = kiln.doit("prune", *SANDBOX, "keep=0", code=3)
    assert "variable keep" in proc.stderr and "Traceback" not in proc.stderr
