"""The sandbox's moto server, with fidelity fixes to the emulator (not to kiln).

On AWS an image made from an EBS-backed instance (CreateImage) or copied from one (CopyImage)
is EBS-backed; moto marks it 'standard', and Packer's amazon-ebs refuses such a source image.
Packer sets an image's description with ModifyImageAttribute, which moto 5 ignores.
Run as `python -m tasks.sandbox_server -H 127.0.0.1 -p PORT`.
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


def main() -> None:
    from moto import server

    from .sandbox_additions import add_to_moto

    add_to_moto()  # encrypted copies, image deprecation, backdating (tasks/sandbox_additions.py)
    _ebs_backed_images()
    _image_descriptions()
    server.main()


if __name__ == "__main__":
    main()
