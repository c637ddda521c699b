"""The sandbox's moto server, with fidelity fixes to the emulator (not to kiln).

On AWS an image made from an EBS-backed instance (CreateImage) or copied from one (CopyImage)
is EBS-backed; moto marks it 'standard', and Packer's amazon-ebs refuses such a source image.
Packer sets an image's description with ModifyImageAttribute, which moto 5 ignores.
moto has endless capacity; KILN_SANDBOX_NO_SPOT (set when the server starts) plays a shortage
as EC2 reports it: `1` for spot (an instant EC2 Fleet with an InsufficientInstanceCapacity
error and no instance), `all` for on-demand too (RunInstances refused).
Run as `python -m tasks.providers.sandbox_server -H 127.0.0.1 -p PORT`.
"""

from __future__ import annotations

from typing import Any


def _ebs_backed_images() -> None:
    from moto.ec2.models import amis

    original = amis.Ami.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if "root_device_type" not in kwargs:
            if kwargs.get("instance") is not None:
                kwargs["root_device_type"] = "ebs"
                kwargs.setdefault("root_device_name", "/dev/xvda")
            elif kwargs.get("source_ami") is not None:
                kwargs["root_device_type"] = kwargs["source_ami"].root_device_type
                kwargs.setdefault("root_device_name", kwargs["source_ami"].root_device_name)
        original(self, *args, **kwargs)

    amis.Ami.__init__ = init  # type: ignore[method-assign]


def _image_descriptions() -> None:
    from moto.ec2.responses.amis import AmisResponse

    original = AmisResponse.modify_image_attribute

    def modify(self: Any) -> Any:
        value = self._get_param("Description.Value")
        if value is None and str(self._get_param("Attribute", "")).lower() == "description":
            value = self._get_param("Value")
        if value is not None:
            self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0].description = value
        return original(self)  # launch permissions, if any, as moto does them

    AmisResponse.modify_image_attribute = modify  # type: ignore[method-assign]


def _capacity_shortage(which: str) -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.fleets import Fleets
    from moto.ec2.responses.instances import InstanceResponse

    fleet = Fleets.create_fleet

    def create_fleet(self: Any) -> Any:
        spec = self._get_param("TargetCapacitySpecification", {})
        if spec.get("DefaultTargetCapacityType") != "spot":
            return fleet(self)
        error = {
            "Lifecycle": "spot",
            "ErrorCode": "InsufficientInstanceCapacity",
            "ErrorMessage": "There is no Spot capacity available that matches your request.",
        }
        return ActionResult(
            {"FleetId": "fleet-00000000-0000-0000-0000-000000000000", "Errors": [error], "Instances": []}
        )

    Fleets.create_fleet = create_fleet  # type: ignore[method-assign]
    if which != "all":
        return

    def run_instances(self: Any) -> Any:
        kind = self._get_param("InstanceType", "m1.small")
        raise EC2ClientError(
            "InsufficientInstanceCapacity",
            f"We currently do not have sufficient {kind} capacity in the Availability Zone you requested.",
        )

    InstanceResponse.run_instances = run_instances  # type: ignore[method-assign]


def _exit_now(signum: int, frame: object) -> None:
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main() -> None:
    import os
    import sys

    from moto import server

    from tasks.providers.sandbox_additions import add_to_moto
    from tasks.providers.sandbox_lifetime import install

    argv = install(sys.argv[1:])  # stops itself when its state folder goes, or when idle

    add_to_moto()  # encrypted copies, image deprecation, backdating (tasks/sandbox_additions.py)
    _ebs_backed_images()
    _image_descriptions()
    shortage = os.environ.get("KILN_SANDBOX_NO_SPOT", "")
    if shortage in ("1", "all"):
        _capacity_shortage(shortage)
    # moto's handler raises SystemExit in the serving thread, and the server then takes about
    # two seconds to wind down its connection threads; its state is in memory only, so nothing
    # is lost by leaving at once (`doit sandbox-stop` and every test's teardown wait for it).
    server.signal_handler = _exit_now
    server.main(argv)


if __name__ == "__main__":
    main()
