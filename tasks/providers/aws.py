"""AWS through boto3's standard credential chain (profiles, AWS_PROFILE, SSO, env), imported lazily."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tasks.catalog.load import Distro
from tasks.errors import KilnError
from tasks.providers.base import CloudImage, VendorImage, by_fingerprint

T = TypeVar("T")

_CRED_HINT = "set AWS_PROFILE, run 'aws configure' or 'aws sso login', or export AWS_ACCESS_KEY_ID"


def _action(what: str) -> str:
    """The IAM action a call needs, from its description ("ec2 ModifyImageAttribute ami-1 in
    us-east-1" -> "ec2:ModifyImageAttribute")."""
    words = what.split()
    if len(words) >= 2 and words[1][:1].isupper() and words[1].isalnum():
        return f"{words[0]}:{words[1]}"
    return "the action"


class AwsProvider:
    name = "aws"
    # A real cloud has passing faults worth waiting out; the sandbox on loopback does not.
    max_attempts = 8

    def __init__(self, distros: dict[str, Distro], state: Path, endpoint: str | None = None) -> None:
        self._distros = distros
        self._state = state
        self._endpoint = endpoint
        self._lock = threading.RLock()
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._ours: dict[str, list[CloudImage]] = {}
        self._vendor: dict[str, list[dict[str, Any]]] = {}
        self._account: str | None = None
        self.calls: list[str] = []  # every cloud call of this run, for the summary and benchmarks

    # -- session and clients ----------------------------------------------------------------

    def _new_session(self) -> Any:
        from tasks.providers.sdk import session

        return session(self._state / "cache" / "sdk")

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._new_session()
            return self._session

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                from botocore.config import Config

                config = Config(
                    retries={"mode": "adaptive", "max_attempts": self.max_attempts}, connect_timeout=10, read_timeout=60
                )
                self._clients[key] = self.session().client(
                    service, region_name=region, endpoint_url=self._endpoint, config=config
                )
            return self._clients[key]

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one cloud call; its failures become one-line errors naming the call."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
            TokenRetrievalError,
            UnauthorizedSSOTokenError,
        )

        if what != "credentials":
            self.calls.append(what)
        try:
            return fn()
        except NoCredentialsError:
            raise KilnError(f"AWS credentials: none found for {what}; {_CRED_HINT}") from None
        except (TokenRetrievalError, UnauthorizedSSOTokenError):
            raise KilnError(f"AWS credentials: the SSO session has expired ({what}); run 'aws sso login'") from None
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Error")
            message = err.response.get("Error", {}).get("Message", "")
            if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
                raise KilnError(f"AWS credentials: expired ({what}); refresh them ({_CRED_HINT})") from None
            if code in ("AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"):
                raise KilnError(f"AWS credentials: rejected by {what} ({code}); {_CRED_HINT}") from None
            # moto answers some services' denials with a bare 403 and the reason in the text.
            if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException") or (
                "not authorized to perform" in message + str(err)
            ):
                raise KilnError(
                    f"AWS permissions: {what} was denied ({code}); grant {_action(what)} to this identity"
                ) from None
            raise KilnError(f"AWS {what}: {code}: {message}") from None
        except EndpointConnectionError as err:
            raise KilnError(f"AWS {what}: cannot reach the endpoint ({err.kwargs.get('endpoint_url', '')})") from None
        except NoRegionError:
            raise KilnError(f"AWS {what}: no region given") from None
        except (BotoCoreError, RuntimeError) as err:
            # botocore raises RuntimeError when refreshed credentials are still expired.
            text = str(err)
            if "expired" in text.lower():
                raise KilnError(f"AWS credentials: expired ({what}); {_CRED_HINT}") from None
            raise KilnError(f"AWS {what}: {text}") from None

    def _frozen(self) -> Any:
        session = self.session()
        creds = self.call("credentials", session.get_credentials)
        if creds is None:
            raise KilnError(f"AWS credentials: none found; {_CRED_HINT}")
        frozen = self.call("credentials", creds.get_frozen_credentials)
        expiry = getattr(creds, "_expiry_time", None)
        if expiry is not None:
            left = expiry.timestamp() - time.time()
            if left <= 0:
                raise KilnError(f"AWS credentials: expired; {_CRED_HINT}")
        return frozen

    def credentials_expiry(self) -> float | None:
        creds = self.session().get_credentials()
        expiry = getattr(creds, "_expiry_time", None) if creds is not None else None
        return expiry.timestamp() if expiry is not None else None

    # -- identity ---------------------------------------------------------------------------

    def account(self) -> str:
        with self._lock:
            if self._account is None:
                # The account per access key is remembered (hashed: no key id is stored), so a
                # no-op run makes no STS call after the first.
                frozen = self._frozen()
                key = hashlib.sha256(f"{self._endpoint}|{frozen.access_key}".encode()).hexdigest()[:24]
                cache = self._state / "accounts.json"
                known: dict[str, str] = {}
                try:
                    known = json.loads(cache.read_text())
                except (OSError, ValueError):
                    known = {}
                if key in known:
                    self._account = known[key]
                else:
                    sts = self.client("sts", "us-east-1")
                    self._account = str(self.call("sts GetCallerIdentity", sts.get_caller_identity)["Account"])
                    known[key] = self._account
                    try:
                        cache.parent.mkdir(parents=True, exist_ok=True)
                        cache.write_text(json.dumps(known, indent=1))
                    except OSError:
                        pass
            return self._account

    # -- lookups ----------------------------------------------------------------------------

    @staticmethod
    def _image(region: str, raw: dict[str, Any]) -> CloudImage:
        return CloudImage(
            image_id=raw["ImageId"],
            name=raw.get("Name", ""),
            region=region,
            created=raw.get("CreationDate", ""),
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
            snapshot_ids=tuple(
                m["Ebs"]["SnapshotId"]
                for m in raw.get("BlockDeviceMappings", [])
                if "Ebs" in m and "SnapshotId" in m["Ebs"]
            ),
            state=raw.get("State", "available"),
            deprecation_time=raw.get("DeprecationTime", ""),
            volume_gb=sum(int(m["Ebs"].get("VolumeSize", 0)) for m in raw.get("BlockDeviceMappings", []) if "Ebs" in m)
            or None,
        )

    def our_images(self, region: str) -> list[CloudImage]:
        with self._lock:
            if region not in self._ours:
                ec2 = self.client("ec2", region)
                raw = self.call(
                    f"ec2 DescribeImages (ours) in {region}",
                    lambda: ec2.describe_images(
                        Owners=["self"], Filters=[{"Name": "tag:built-by", "Values": ["kiln"]}]
                    ),
                )
                self._ours[region] = [
                    self._image(region, i) for i in raw.get("Images", []) if i.get("State") in ("available", "pending")
                ]
            return self._ours[region]

    def lifecycle_images(self, region: str) -> list[CloudImage]:
        """kiln's images with the disabled ones, which DescribeImages hides unless asked: what
        `doit prune` decides about (one call per region)."""
        ec2 = self.client("ec2", region)
        raw = self.call(
            f"ec2 DescribeImages (ours, disabled too) in {region}",
            lambda: ec2.describe_images(
                Owners=["self"], Filters=[{"Name": "tag:built-by", "Values": ["kiln"]}], IncludeDisabled=True
            ),
        )
        states = ("available", "pending", "disabled")
        return [self._image(region, i) for i in raw.get("Images", []) if i.get("State") in states]

    def deprecate(self, region: str, image_id: str, at: datetime) -> None:
        ec2 = self.client("ec2", region)
        self.call(
            f"ec2 EnableImageDeprecation {image_id} in {region}",
            lambda: ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=at),
        )

    def disable(self, region: str, image_id: str) -> None:
        ec2 = self.client("ec2", region)
        self.call(f"ec2 DisableImage {image_id} in {region}", lambda: ec2.disable_image(ImageId=image_id))

    def remember(self, region: str, image: CloudImage) -> None:
        """Add an image kiln just made to this run's lookup, instead of asking the cloud again."""
        with self._lock:
            self.our_images(region).append(image)

    def forget(self, region: str) -> None:
        """Drop the cached lookup after kiln changed the region (a build, a copy)."""
        with self._lock:
            self._ours.pop(region, None)

    def vendor_image(self, region: str, distro: str) -> VendorImage:
        spec = self._distros[distro].conf["aws"]
        with self._lock:
            if region not in self._vendor:
                owners = sorted({d.conf["aws"]["owner"] for d in self._distros.values()})
                names = sorted({d.conf["aws"]["name"] for d in self._distros.values()})
                ec2 = self.client("ec2", region)
                raw = self.call(
                    f"ec2 DescribeImages (vendor) in {region}",
                    lambda: ec2.describe_images(
                        Owners=owners,
                        Filters=[{"Name": "name", "Values": names}, {"Name": "state", "Values": ["available"]}],
                    ),
                )
                self._vendor[region] = list(raw.get("Images", []))
        matches = [
            i
            for i in self._vendor[region]
            if i.get("OwnerId") == spec["owner"]
            and fnmatch.fnmatchcase(i.get("Name", ""), spec["name"])
            and i.get("Architecture", "x86_64") == spec["architecture"]
        ]
        if not matches:
            raise KilnError(
                f"distros/{distro}/distro.toml: no vendor image in {region} matches owner {spec['owner']} and name {spec['name']!r}"
            )
        newest = max(matches, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
        return VendorImage(newest["ImageId"], newest.get("Name", ""), spec["owner"], newest.get("CreationDate", ""))

    def describe_image(self, region: str, image_id: str) -> CloudImage | None:
        ec2 = self.client("ec2", region)
        raw = self.call(
            f"ec2 DescribeImages {image_id} in {region}",
            # Disabled images too: DescribeImages hides them unless asked.
            lambda: ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}], IncludeDisabled=True),
        )
        images = raw.get("Images", [])
        return self._image(region, images[0]) if images else None

    # -- building ---------------------------------------------------------------------------

    def packer_env(self) -> dict[str, str]:
        frozen = self._frozen()
        env = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
        return env

    def packer_vars(self, region: str) -> dict[str, str]:
        # boto3 honours AWS_ENDPOINT_URL(_EC2) itself; Packer 1.6.6 does not, so pass it on.
        endpoint = self._endpoint or os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL") or ""
        return {"ec2_endpoint": endpoint}

    def tag_image(self, region: str, image: CloudImage | str, tags: dict[str, str]) -> None:
        found = image if isinstance(image, CloudImage) else self.describe_image(region, image)
        if found is None:
            raise KilnError(f"AWS: image {image} is gone from {region}")
        ec2 = self.client("ec2", region)
        resources = [found.image_id, *found.snapshot_ids]
        tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        self.call(
            f"ec2 CreateTags {found.image_id} in {region}", lambda: ec2.create_tags(Resources=resources, Tags=tag_list)
        )

    def deregister(self, region: str, image_id: str) -> None:
        """Deregister an image and delete its snapshots (deregistering alone leaves them)."""
        found = self.describe_image(region, image_id)
        ec2 = self.client("ec2", region)
        self.call(f"ec2 DeregisterImage {image_id} in {region}", lambda: ec2.deregister_image(ImageId=image_id))
        for snapshot in found.snapshot_ids if found else ():
            self.call(f"ec2 DeleteSnapshot {snapshot} in {region}", partial(ec2.delete_snapshot, SnapshotId=snapshot))

    # -- channels (base.ChannelStore) -------------------------------------------------------

    def put_channel(self, region: str, name: str, image_id: str, description: str) -> None:
        """The channel's SSM parameter; AWS checks an aws:ec2:image value exists in the
        account and region (asynchronously; moto 5.2 accepts any)."""
        ssm = self.client("ssm", region)
        self.call(
            f"ssm PutParameter {name} in {region}",
            lambda: ssm.put_parameter(
                Name=name,
                Value=image_id,
                Type="String",
                DataType="aws:ec2:image",
                Overwrite=True,
                Description=description[:1024],
            ),
        )

    def read_channels(self, region: str, prefix: str) -> dict[str, str]:
        ssm = self.client("ssm", region)
        out: dict[str, str] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Path": prefix, "Recursive": True}
            if token:
                kwargs["NextToken"] = token
            page = self.call(
                f"ssm GetParametersByPath {prefix} in {region}", partial(ssm.get_parameters_by_path, **kwargs)
            )
            out.update({p["Name"]: p["Value"] for p in page.get("Parameters", [])})
            token = page.get("NextToken")
            if not token:
                return out

    def images_by_fingerprint(self, region: str) -> dict[str, list[CloudImage]]:
        return by_fingerprint(self.our_images(region))

    def copy_image(self, source: CloudImage, region: str, kms_key: str | None = None, name: str = "") -> str:
        """Start copying an image into a region of this account (another, or the same one to
        encrypt it with another key); returns the new id. kms_key: None copies as the source
        is, '' encrypts with the region's default EBS key, else with that key."""
        ec2 = self.client("ec2", region)
        encryption: dict[str, Any] = {}
        if kms_key is not None:
            encryption = {"Encrypted": True, **({"KmsKeyId": kms_key} if kms_key else {})}
        raw = self.call(
            f"ec2 CopyImage {source.image_id} from {source.region} in {region}",
            lambda: ec2.copy_image(
                SourceImageId=source.image_id,
                SourceRegion=source.region,
                Name=name or source.name,
                Description=f"copy of {source.region}/{source.image_id} by kiln",
                **encryption,
            ),
        )
        return str(raw["ImageId"])

    def wait_available(self, region: str, image_id: str) -> CloudImage:
        ec2 = self.client("ec2", region)
        waiter = ec2.get_waiter("image_available")
        self.call(
            f"ec2 DescribeImages (waiting for {image_id}) in {region}",
            lambda: waiter.wait(ImageIds=[image_id], WaiterConfig={"Delay": 15, "MaxAttempts": 240}),
        )
        found = self.describe_image(region, image_id)
        if found is None:
            raise KilnError(f"AWS: the copy {image_id} vanished from {region} before it was available")
        return found
