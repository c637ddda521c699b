"""What the sandbox's moto server emulates beyond moto for distribution and lifecycle (installed
by tasks/sandbox_server.py before the server starts; not kiln's code, the emulator's).

Each is the least that makes the call accepted and its effect visible afterwards (the README
lists them, with what moto 5.2.5 does itself):

- Encrypted copies: moto's CopyImage ignores `Encrypted` and `KmsKeyId`. Here the copy's block
  device shows `Encrypted` and `KmsKeyId` (a key or alias moto's KMS knows is shown as its key
  ARN, as AWS does; `Encrypted` alone takes the region's default EBS key), and so does its
  snapshot. A copy of an encrypted image stays encrypted (same key in the same region, the
  default key in another). Packer's `encrypt_boot` is such a copy too.
- Deprecation: moto has no EnableImageDeprecation / DisableImageDeprecation. Here they set and
  clear the image's `DeprecationTime` (rounded to the minute), which DescribeImages returns.
- Backdating, for tests and demos of lifecycle policies: `POST /kiln-sandbox/image-created`
  with JSON `{"region", "image_id", "created"}` (ISO 8601) sets an image's CreationDate. It is
  not an AWS API: no client calls it, only a test or a person at a shell.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any


def add_to_moto() -> None:
    _encrypted_copies()
    _deprecation()
    _backdating()


def _key_arn(backend: Any, key_id: str | None) -> str:
    """The key ARN AWS would show: a key or alias moto's KMS knows resolves; the region's
    default EBS key when none is named; anything else as given."""
    if not key_id:
        return str(backend.default_kms_key_id or backend._create_default_encryption_key())
    from moto.kms.models import kms_backends

    kms = kms_backends[backend.account_id][backend.region_name]
    try:
        return str(kms.describe_key(key_id).arn)
    except Exception:  # an unknown key: AWS would refuse the copy; the sandbox records it
        return key_id


def _encrypted_copies() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidParameterDependency
    from moto.ec2.models import amis, ec2_backends
    from moto.ec2.responses.amis import AmisResponse

    amis.Ami.encrypted = False  # type: ignore[attr-defined]
    amis.Ami.kms_key_id = None  # type: ignore[attr-defined]
    plain = amis.Ami.block_device_mappings

    def block_device_mappings(self: Any) -> list[dict[str, Any]]:
        mappings: list[dict[str, Any]] = plain.fget(self)  # type: ignore[attr-defined]
        for m in mappings:
            m["Ebs"]["Encrypted"] = bool(self.encrypted)
            if self.encrypted:
                m["Ebs"]["KmsKeyId"] = self.kms_key_id
        return mappings

    amis.Ami.block_device_mappings = property(block_device_mappings)  # type: ignore[assignment,method-assign]

    def copy_image(self: Any) -> ActionResult:
        source_id = self._get_param("SourceImageId")
        source_region = self._get_param("SourceRegion")
        encrypted = self._get_bool_param("Encrypted", False)
        key_id = self._get_param("KmsKeyId")
        if key_id and not encrypted:
            raise InvalidParameterDependency("KmsKeyId", "Encrypted")
        self.error_on_dryrun()
        image = self.ec2_backend.copy_image(
            source_id, source_region, self._get_param("Name"), self._get_param("Description")
        )
        source = ec2_backends[self.ec2_backend.account_id][source_region].amis.get(source_id)
        if encrypted:
            image.encrypted, image.kms_key_id = True, _key_arn(self.ec2_backend, key_id)
        elif source is not None and getattr(source, "encrypted", False):
            same = source_region == self.ec2_backend.region_name
            image.encrypted = True
            image.kms_key_id = source.kms_key_id if same else _key_arn(self.ec2_backend, None)  # type: ignore[attr-defined]
        if image.encrypted:
            image.ebs_snapshot.encrypted, image.ebs_snapshot.kms_key_id = True, image.kms_key_id
        return ActionResult({"ImageId": image.id})

    AmisResponse.copy_image = copy_image  # type: ignore[method-assign]


def _deprecation() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.models import amis
    from moto.ec2.responses.amis import AmisResponse

    amis.Ami.deprecation_time = None  # type: ignore[attr-defined]

    def enable_image_deprecation(self: Any) -> ActionResult:
        image = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
        # AWS rounds the time to the nearest minute.
        at = _parse(str(self._get_param("DeprecateAt"))) + timedelta(seconds=30)
        self.error_on_dryrun()
        image.deprecation_time = at.strftime("%Y-%m-%dT%H:%M:00.000Z")
        return ActionResult({"Return": True})

    def disable_image_deprecation(self: Any) -> ActionResult:
        image = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
        self.error_on_dryrun()
        image.deprecation_time = None
        return ActionResult({"Return": True})

    AmisResponse.enable_image_deprecation = enable_image_deprecation  # type: ignore[attr-defined]
    AmisResponse.disable_image_deprecation = disable_image_deprecation  # type: ignore[attr-defined]


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


BACKDATE_PATH = "/kiln-sandbox/image-created"


def _backdating() -> None:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != BACKDATE_PATH:
            return original(self, environ, start_response)
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(size) or b"{}")
            image = ec2_backends[DEFAULT_ACCOUNT_ID][body["region"]].amis[body["image_id"]]
            image.creation_date = _parse(str(body["created"]))
            status, answer = "200 OK", {"image_id": image.id, "created": image.creation_date.isoformat()}
        except (KeyError, ValueError, TypeError) as err:
            status, answer = "400 Bad Request", {"error": f"{type(err).__name__}: {err}"}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]
