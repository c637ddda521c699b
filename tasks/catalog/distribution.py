"""customer.toml [distribution]: who may launch the images (accounts, organizations, OUs) and
how they are encrypted in each region. Plain data, checked when the customer is read; no SDK.

Both are placement, not content: neither is in any fingerprint. Sharing is applied to whatever
image is current; the KMS key decides which image may be current in a region (one encrypted
with another key is re-copied, never rebuilt).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tasks.errors import KilnError, valid_list

# The tag that says which key (as customer.toml names it) an image was encrypted with: what
# AWS shows is the key's ARN, which an alias does not name; the tag needs no KMS lookup.
KMS_TAG = "kms-key"
DEFAULT_KEY = "account-default"  # no key named: the account's default EBS key for the region

# Patterns as text: re compiles (and caches) one only when a [distribution] value is checked,
# so `doit list` for a customer without one compiles none.
_ACCOUNT = r"[0-9]{12}"
_ORG = r"arn:aws[a-z-]*:organizations::[0-9]{12}:organization/o-[a-z0-9]{10,32}"
_OU = r"arn:aws[a-z-]*:organizations::[0-9]{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}"
_KEY_ID = r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_ALIAS = r"alias/[A-Za-z0-9/_-]{1,250}"
_KEY_ARN = r"arn:aws[a-z-]*:kms:([a-z0-9-]+):[0-9]{12}:(key/.+|alias/[A-Za-z0-9/_-]+)"


@dataclass(frozen=True)
class Distribution:
    accounts: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    ous: tuple[str, ...] = ()
    encrypt: bool = False
    kms_keys: dict[str, str] = field(default_factory=dict)

    def launch_set(self) -> dict[str, list[str]]:
        """With whom images are shared, as recorded in the results database."""
        return {
            "accounts": sorted(set(self.accounts)),
            "organizations": sorted(set(self.organizations)),
            "ous": sorted(set(self.ous)),
        }

    @property
    def shared(self) -> bool:
        return bool(self.accounts or self.organizations or self.ous)

    def kms_key(self, region: str) -> str:
        """The key to name in CopyImage / Packer's kms_key_id: '' is the account's default."""
        return self.kms_keys.get(region, "")

    def key_label(self, region: str) -> str:
        return self.kms_keys.get(region) or DEFAULT_KEY


def placed(dist: Distribution, region: str, tags: dict[str, str]) -> bool:
    """Whether an image (by its tags) may be the current one in a region: with encryption on,
    only one encrypted with the region's key as configured (kiln tags every image it encrypts).
    With encryption off any image will do (an encrypted one cannot be copied unencrypted)."""
    return not dist.encrypt or tags.get(KMS_TAG) == dist.key_label(region)


def encryption_vars(dist: Distribution, region: str) -> dict[str, str]:
    """Packer variables: amazon-ebs encrypts the image it makes (1.6.6: by an encrypted copy)."""
    return {"encrypt_boot": "true", "kms_key_id": dist.kms_key(region)} if dist.encrypt else {}


def encryption_tags(dist: Distribution, region: str) -> dict[str, str]:
    return {KMS_TAG: dist.key_label(region)} if dist.encrypt else {}


def distribution(conf: Any, provider: str) -> Distribution:
    """The customer's [distribution] for a provider: only AWS (and the sandbox) shares and
    encrypts; for the others it is empty."""
    table: dict[str, Any] = (conf.get("distribution") or {}) if provider in ("aws", "sandbox") else {}
    return Distribution(
        accounts=tuple(table.get("accounts") or ()),
        organizations=tuple(table.get("organizations") or ()),
        ous=tuple(table.get("ous") or ()),
        encrypt=bool(table.get("encrypt")),
        kms_keys=dict(table.get("kms_keys") or {}),
    )


def check_distribution(table: dict[str, Any] | None, shown: str) -> None:
    """Values the schema's types cannot check: one line naming the file and key."""
    if not table:
        return
    checks = (
        ("accounts", _ACCOUNT, 'an AWS account id is 12 digits, e.g. "111122223333"'),
        (
            "organizations",
            _ORG,
            'an organization ARN looks like "arn:aws:organizations::111122223333:organization/o-exampleorgid"',
        ),
        (
            "ous",
            _OU,
            'an OU ARN looks like "arn:aws:organizations::111122223333:ou/o-exampleorgid/ou-ab12-exampleou"',
        ),
    )
    for key, pattern, right in checks:
        for value in table.get(key) or ():
            if not re.fullmatch(pattern, value):
                raise KilnError(f"{shown}: key 'distribution.{key}' has {value!r}, which is not valid; {right}")
    keys: dict[str, str] = table.get("kms_keys") or {}
    if keys and not table.get("encrypt"):
        raise KilnError(
            f"{shown}: key 'distribution.kms_keys' is set but 'distribution.encrypt' is not true;"
            " set encrypt = true (or remove kms_keys)"
        )
    for region, key in keys.items():
        arn = re.fullmatch(_KEY_ARN, key)
        if not (re.fullmatch(_KEY_ID, key) or re.fullmatch(_ALIAS, key) or arn):
            raise KilnError(
                f"{shown}: key 'distribution.kms_keys.{region}' has {key!r}, which is not a KMS key;"
                ' name a key id, "alias/<name>" or a key ARN'
            )
        if arn and arn.group(1) != region:
            raise KilnError(
                f"{shown}: key 'distribution.kms_keys.{region}' names a key of region {arn.group(1)};"
                f" a copy in {region} needs a key of {region}"
            )


def check_kms_regions(table: dict[str, Any] | None, shown: str, known: frozenset[str]) -> None:
    """Region names in kms_keys, against botocore's list (known only where botocore is)."""
    for region in (table or {}).get("kms_keys") or {}:
        if known and region not in known:
            raise KilnError(
                f"{shown}: key 'distribution.kms_keys' names unknown AWS region '{region}'; valid: {valid_list(known)}"
            )
