"""Azure: managed images in the customer's resource group, through azure-identity's
DefaultAzureCredential (environment service principal, or the Azure CLI's login) and
azure-mgmt-compute, both imported lazily.

One `images.list_by_resource_group` per run answers every lookup in every location (images
carry their location); one `virtual_machine_images.list` per location and distro resolves the
marketplace image's "latest" to a concrete version, which goes into the root's fingerprint.
A missing location is filled by a build: Azure copies managed images between locations only
through a Compute Gallery, which kiln does not manage.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from tasks.catalog.load import Customer, Distro
from tasks.errors import KilnError
from tasks.providers.base import CloudImage, VendorImage, by_fingerprint

T = TypeVar("T")

LOGIN_HINT = "run 'az login' or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
# Packer reads these itself (the template's env() defaults); nothing else of Azure's is passed on.
PACKER_ENV = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET")
# States of an image that exists or is being made; Failed and Deleting ones are not found.
_LIVE = ("Succeeded", "Creating", "Updating", None)


def location_key(location: str) -> str:
    """Azure answers 'East US' or 'eastus' for the same location."""
    return location.replace(" ", "").lower()


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Marketplace versions compare part by part as numbers (0.20240101.9 < 0.20240101.10)."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in version.split("."))


def image_name_of(image_id: str) -> str:
    return image_id.rstrip("/").split("/")[-1]


class AzureProvider:
    name = "azure"

    def __init__(self, distros: dict[str, Distro], customer: Customer, state: Path) -> None:
        conf = customer.azure()
        self._distros = distros
        self._state = state
        self._file = f"customers/{customer.name}/customer.toml"
        self.subscription = str(conf["subscription_id"])
        self.resource_group = str(conf["resource_group"])
        self.vm_size = str(conf["vm_size"])
        self._lock = threading.RLock()
        self._credential: Any = None
        self._login_error: KilnError | None = None
        self._client: Any = None
        self._ours: list[CloudImage] | None = None
        self._vendor: dict[tuple[str, str], VendorImage] = {}
        self.calls: list[str] = []  # every cloud call of this run, for the summary and benchmarks

    # -- credential and client --------------------------------------------------------------

    def credential(self) -> Any:
        """DefaultAzureCredential, asked for a token once, so a missing login is said before
        anything else happens (the SDK's clients would only fail at their first call)."""
        with self._lock:
            if self._login_error is not None:  # said once per run, not asked again per image
                raise self._login_error
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                # The two sources Packer uses too (a service principal in the environment, or
                # the Azure CLI's login): no browser pop-up, no editor caches, and no managed
                # identity, whose metadata probe would stall every run off Azure.
                credential = DefaultAzureCredential(
                    exclude_interactive_browser_credential=True,
                    exclude_managed_identity_credential=True,
                    exclude_shared_token_cache_credential=True,
                    exclude_visual_studio_code_credential=True,
                    exclude_powershell_credential=True,
                    exclude_developer_cli_credential=True,
                )
                try:
                    self.call("credentials", lambda: credential.get_token(MANAGEMENT_SCOPE))
                except KilnError as err:
                    self._login_error = err
                    raise
                self._credential = credential
            return self._credential

    def client(self, *_: str) -> Any:
        """The compute client (one per run, every location: ARM is global)."""
        with self._lock:
            if self._client is None:
                from azure.mgmt.compute import ComputeManagementClient

                self._client = ComputeManagementClient(self.credential(), self.subscription)
            return self._client

    def call(self, what: str, fn: Callable[[], T], not_found: str | None = None) -> T:
        """Run one cloud call; its failures become one-line errors naming the call.
        not_found: what to say when Azure answers 404 (a resource group, an image)."""
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        if what != "credentials":
            self.calls.append(what)
        try:
            return fn()
        except ClientAuthenticationError:
            # No login at all (CredentialUnavailableError is one of these) or a token Azure
            # refused. The SDK's text lists every credential tried: not one line, not the fix.
            if what == "credentials":
                raise KilnError(f"Azure credentials: none found; {LOGIN_HINT}") from None
            raise KilnError(f"Azure credentials: rejected by {what}; {LOGIN_HINT}") from None
        except ResourceNotFoundError as err:
            raise KilnError(not_found or f"Azure {what}: not found: {_first_line(err)}") from None
        except HttpResponseError as err:
            code = getattr(getattr(err, "error", None), "code", None) or str(getattr(err, "status_code", "") or "")
            if code in ("AuthorizationFailed", "LinkedAuthorizationFailed", "403"):
                raise KilnError(
                    f"Azure permissions: {what} was denied ({code}); grant the role to this identity"
                ) from None
            if code in ("InvalidAuthenticationToken", "ExpiredAuthenticationToken", "401"):
                raise KilnError(f"Azure credentials: rejected by {what} ({code}); {LOGIN_HINT}") from None
            if code == "SubscriptionNotFound":
                raise KilnError(
                    f"{self._file}: key 'azure.subscription_id': subscription {self.subscription} not found ({what})"
                ) from None
            raise KilnError(f"Azure {what}: {code + ': ' if code else ''}{_first_line(err)}") from None
        except ServiceRequestError as err:
            raise KilnError(f"Azure {what}: cannot reach Azure ({_first_line(err)})") from None
        except AzureError as err:
            raise KilnError(f"Azure {what}: {_first_line(err)}") from None

    def credentials_expiry(self) -> float | None:
        # The CLI and the service principal renew tokens themselves, and so does Packer.
        return None

    # -- identity ---------------------------------------------------------------------------

    def account(self) -> str:
        """The subscription (from customer.toml), once the login is known to work."""
        self.credential()
        return self.subscription

    # -- lookups ----------------------------------------------------------------------------

    def _image(self, raw: Any) -> CloudImage:
        tags = {str(k): str(v) for k, v in (getattr(raw, "tags", None) or {}).items()}
        created = ""
        system = getattr(raw, "system_data", None)
        when = getattr(system, "created_at", None) if system is not None else None
        if isinstance(when, datetime):
            created = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return CloudImage(
            image_id=str(raw.id),
            name=str(raw.name),
            region=location_key(str(raw.location)),
            created=created,
            tags=tags,
        )

    def _all_ours(self) -> list[CloudImage]:
        with self._lock:
            if self._ours is None:
                client = self.client()
                rg = self.resource_group
                raw = self.call(
                    f"compute images.list_by_resource_group {rg}",
                    lambda: list(client.images.list_by_resource_group(rg)),
                    not_found=f"{self._file}: key 'azure.resource_group': resource group '{rg}' not found in"
                    f" subscription {self.subscription}; create it (az group create) or fix the key",
                )
                self._ours = [
                    self._image(i)
                    for i in raw
                    if (getattr(i, "tags", None) or {}).get("built-by") == "kiln"
                    and getattr(i, "provisioning_state", None) in _LIVE
                ]
            return self._ours

    def our_images(self, region: str) -> list[CloudImage]:
        key = location_key(region)
        return [i for i in self._all_ours() if i.region == key]

    def remember(self, region: str, image: CloudImage) -> None:
        """Add an image kiln just made to this run's lookup, instead of asking the cloud again."""
        with self._lock:
            self._all_ours().append(image)

    def forget(self, region: str) -> None:
        """Drop the cached lookup after kiln changed the resource group."""
        with self._lock:
            self._ours = None

    def images_by_fingerprint(self, region: str) -> dict[str, list[CloudImage]]:
        return by_fingerprint(self.our_images(region))

    def vendor_image(self, region: str, distro: str) -> VendorImage:
        """The marketplace image's newest version in this location (one call per location and
        distro). Its id is the URN publisher:offer:sku:version, which the template splits."""
        spec = self._distros[distro].conf.get("azure")
        if not spec:
            raise KilnError(f"distros/{distro}/distro.toml: missing table [azure] (publisher, offer, sku)")
        publisher, offer, sku = str(spec["publisher"]), str(spec["offer"]), str(spec["sku"])
        with self._lock:
            key = (location_key(region), distro)
            if key not in self._vendor:
                client = self.client()
                raw = self.call(
                    f"compute virtual_machine_images.list {publisher}:{offer}:{sku} in {region}",
                    lambda: list(client.virtual_machine_images.list(region, publisher, offer, sku)),
                    not_found=f"distros/{distro}/distro.toml: no marketplace image {publisher}:{offer}:{sku} in {region}",
                )
                versions = [str(v.name) for v in raw if getattr(v, "name", None)]
                if not versions:
                    raise KilnError(
                        f"distros/{distro}/distro.toml: no marketplace image {publisher}:{offer}:{sku} in {region}"
                    )
                version = max(versions, key=version_key)
                urn = f"{publisher}:{offer}:{sku}:{version}"
                self._vendor[key] = VendorImage(urn, urn, publisher, version)
            return self._vendor[key]

    def describe_image(self, region: str, image_id: str) -> CloudImage | None:
        from azure.core.exceptions import ResourceNotFoundError

        client = self.client()
        name = image_name_of(image_id)

        def get() -> Any:
            try:
                return client.images.get(self.resource_group, name)
            except ResourceNotFoundError:
                return None

        raw = self.call(f"compute images.get {name}", get)
        return self._image(raw) if raw is not None else None

    # -- building ---------------------------------------------------------------------------

    def packer_env(self) -> dict[str, str]:
        """Checks the login first (one line if there is none); Packer then authenticates itself
        from these variables, or from the Azure CLI's login. Nothing is written anywhere."""
        self.credential()
        return {k: os.environ[k] for k in PACKER_ENV if os.environ.get(k)}

    def packer_vars(self, region: str) -> dict[str, str]:
        return {"subscription_id": self.subscription, "resource_group": self.resource_group, "vm_size": self.vm_size}

    def tag_image(self, region: str, image: CloudImage | str, tags: dict[str, str]) -> None:
        found = image if isinstance(image, CloudImage) else self.describe_image(region, image)
        if found is None:
            raise KilnError(f"Azure: image {image} is gone from resource group {self.resource_group}")
        from azure.mgmt.compute.models import ImageUpdate

        client = self.client()
        name = image_name_of(found.image_id)
        # An update replaces the image's whole tag set: send the ones it has with the new ones.
        merged = {**found.tags, **tags}
        self.call(
            f"compute images.begin_update {name}",
            lambda: client.images.begin_update(self.resource_group, name, ImageUpdate(tags=merged)).result(),
            not_found=f"Azure: image {name} is gone from resource group {self.resource_group}",
        )

    def deregister(self, region: str, image_id: str) -> None:
        """Delete a managed image (its disks are the image's own: nothing is left behind)."""
        client = self.client()
        name = image_name_of(image_id)
        self.call(
            f"compute images.begin_delete {name}",
            lambda: client.images.begin_delete(self.resource_group, name).result(),
        )

    def images_in_use(self, region: str, candidates: set[str]) -> dict[str, str]:
        """image id -> the virtual machine or scale set launched from it (ids compare without case)."""
        if not candidates:
            return {}
        client = self.client()
        wanted = {c.lower(): c for c in candidates}
        held: dict[str, str] = {}

        def reference(profile: Any) -> str:
            ref = getattr(getattr(profile, "storage_profile", None), "image_reference", None)
            return str(getattr(ref, "id", None) or "").lower()

        vms = self.call("compute virtual_machines.list_all", lambda: list(client.virtual_machines.list_all()))
        for vm in vms:
            image = wanted.get(reference(vm))
            if image and image not in held:
                held[image] = f"virtual machine {vm.name}"
        sets = self.call(
            "compute virtual_machine_scale_sets.list_all", lambda: list(client.virtual_machine_scale_sets.list_all())
        )
        for vmss in sets:
            image = wanted.get(reference(getattr(vmss, "virtual_machine_profile", None)))
            if image and image not in held:
                held[image] = f"scale set {vmss.name}"
        return held


def _first_line(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
