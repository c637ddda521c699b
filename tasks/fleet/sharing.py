"""Launch permissions for the customer's accounts, organizations and OUs ([distribution]), and
create-volume permission on the images' snapshots for the accounts.

kiln applies them itself, after the commit point, to the image that is current once an image
task is done, however it got there (built, copied, adopted or up to date), not Packer: 1.6.6
has `ami_users` but neither `ami_org_arns` nor `ami_ou_arns`, and only kiln knows what to take
back. The wanted set is applied, not appended: a permission the image has beyond it is removed
(a public one included). The results database records what was applied; an image whose record
equals the wanted set costs no call, so a no-op run makes none. Images kiln shared earlier
follow the list too (each region once per run): a name removed from the list loses them all.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.catalog.distribution import DEFAULT_KEY, Distribution, distribution, placed
from tasks.providers.base import CloudImage
from tasks.records.results import now

if TYPE_CHECKING:
    from tasks.fleet.context import Context
    from tasks.models import ImageKey

Shared = dict[str, list[str]]
_KINDS = (("accounts", "UserId"), ("organizations", "OrganizationArn"), ("ous", "OrganizationalUnitArn"))
# What consumers need in a KMS key's policy to launch an image encrypted with it (AWS's guide
# to sharing encrypted AMIs); kiln does not edit key policies.
KEY_ACTIONS = "kms:DescribeKey, kms:Decrypt, kms:ReEncrypt*, kms:GenerateDataKey*, kms:CreateGrant"


@dataclass
class _RunState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    recorded: dict[str, dict[str, Shared]] = field(default_factory=dict)  # region -> image -> set
    swept: set[str] = field(default_factory=set)
    hinted: set[str] = field(default_factory=set)


_STATES: weakref.WeakKeyDictionary[Context, _RunState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _state(run: Context) -> _RunState:
    with _STATES_LOCK:
        if run not in _STATES:
            _STATES[run] = _RunState()
        return _STATES[run]


def _recorded(run: Context, region: str) -> dict[str, Shared]:
    """This region's share records: one SQLite read per run and region."""
    st = _state(run)
    with st.lock:
        if region not in st.recorded:
            o = run.options
            rows = run.results.read(
                "SELECT s.image_id, s.shared FROM shares s JOIN images i ON i.provider = s.provider"
                " AND i.account = s.account AND i.region = s.region AND i.image_id = s.image_id"
                " WHERE s.provider=? AND s.account=? AND s.region=? AND i.customer=?",
                (o.provider, run.provider.account(), region, o.customer),
            )
            st.recorded[region] = {str(r["image_id"]): json.loads(r["shared"]) for r in rows}
        return st.recorded[region]


def share_current(run: Context, key: ImageKey) -> None:
    """After an image task: its current image gets the wanted set; so do the region's images
    shared before whose record differs."""
    dist = distribution(run.customer.conf, run.options.provider)
    if run.options.provider not in ("aws", "sandbox"):
        return
    fp = run.fingerprint(key)[0]
    found = [i for i in run.cloud_images(key.region).get(fp, []) if placed(dist, key.region, i.tags)]
    if found:
        apply(run, key.label, found[0], dist)
    _sweep(run, key.region, dist)


def _sweep(run: Context, region: str, dist: Distribution) -> None:
    st = _state(run)
    with st.lock:
        if region in st.swept:
            return
        st.swept.add(region)
    wanted = dist.launch_set()
    stale = {i for i, shared in _recorded(run, region).items() if shared != wanted}
    if not stale:
        return
    for image in run.provider.our_images(region):
        if image.image_id in stale:
            apply(run, f"{region}: earlier image", image, dist)


def apply(run: Context, label: str, image: CloudImage, dist: Distribution) -> bool:
    """Give the image exactly the wanted launch permissions (and its snapshots the accounts'
    create-volume permission). False when the record said it has them already."""
    region, image_id = image.region, image.image_id
    wanted = dist.launch_set()
    records = _recorded(run, region)
    before = records.get(image_id)
    if before == wanted or (before is None and not dist.shared):
        return False
    provider = run.provider
    ec2 = provider.client("ec2", region)
    raw = provider.call(
        f"ec2 DescribeImageAttribute {image_id} in {region}",
        lambda: ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission"),
    )
    have = {(k, v) for p in raw.get("LaunchPermissions", []) for k, v in p.items()}
    want = {(name, value) for kind, name in _KINDS for value in wanted[kind]}
    add, remove = sorted(want - have), sorted(have - want)
    if add or remove:
        change = {"Add": [{k: v} for k, v in add], "Remove": [{k: v} for k, v in remove]}
        provider.call(
            f"ec2 ModifyImageAttribute {image_id} in {region}",
            lambda: ec2.modify_image_attribute(ImageId=image_id, LaunchPermission=change),
        )
    if before is None or before["accounts"] or wanted["accounts"]:
        _share_snapshots(run, image, set(wanted["accounts"]))
    with run.results.write() as con:
        con.execute(
            "INSERT OR REPLACE INTO shares VALUES (?, ?, ?, ?, ?, ?)",
            (run.options.provider, provider.account(), region, image_id, json.dumps(wanted, sort_keys=True), now()),
        )
    records[image_id] = wanted
    gone = [v for k, v in remove if k != "Group"] + (["the public"] if ("Group", "all") in remove else [])
    said = f"{image_id} shared with {describe(wanted)}" if dist.shared else f"{image_id} is private to this account"
    run.say(f"{label}: {said}" + (f"; no longer with {', '.join(gone)}" if gone else ""))
    if dist.encrypt and dist.shared:
        _key_hint(run, region, dist)
    return True


def _share_snapshots(run: Context, image: CloudImage, accounts: set[str]) -> None:
    provider = run.provider
    region = image.region
    ec2 = provider.client("ec2", region)
    snapshots = image.snapshot_ids
    if not snapshots:  # an image kiln has just built: its snapshots were not looked up
        found = provider.describe_image(region, image.image_id)
        snapshots = found.snapshot_ids if found is not None else ()
    for snapshot in snapshots:
        raw = provider.call(
            f"ec2 DescribeSnapshotAttribute {snapshot} in {region}",
            lambda s=snapshot: ec2.describe_snapshot_attribute(SnapshotId=s, Attribute="createVolumePermission"),
        )
        perms = raw.get("CreateVolumePermissions", [])
        have = {p["UserId"] for p in perms if "UserId" in p}
        public = any(p.get("Group") == "all" for p in perms)
        changes: list[dict[str, Any]] = []
        if accounts - have:
            changes.append({"OperationType": "add", "UserIds": sorted(accounts - have)})
        if have - accounts or public:
            removal: dict[str, Any] = {"OperationType": "remove"}
            if have - accounts:
                removal["UserIds"] = sorted(have - accounts)
            if public:
                removal["GroupNames"] = ["all"]
            changes.append(removal)
        for change in changes:
            provider.call(
                f"ec2 ModifySnapshotAttribute {snapshot} in {region}",
                lambda s=snapshot, c=change: ec2.modify_snapshot_attribute(
                    SnapshotId=s, Attribute="createVolumePermission", **c
                ),
            )


def _key_hint(run: Context, region: str, dist: Distribution) -> None:
    """Once per run and region: which key's policy must let the consumers in."""
    st = _state(run)
    with st.lock:
        if region in st.hinted:
            return
        st.hinted.add(region)
    who = describe(dist.launch_set())
    label = dist.key_label(region)
    if label == DEFAULT_KEY:
        run.say(
            f"{region}: images are encrypted with the account's default EBS key; if that is the AWS managed key"
            f" aws/ebs, {who} cannot launch them (AWS shares no image encrypted with it): name a customer managed"
            f" key in distribution.kms_keys.{region}"
        )
        return
    run.say(
        f"{region}: images are encrypted with KMS key {label}: its key policy must allow {who} {KEY_ACTIONS}"
        " (kiln does not edit key policies)"
    )


def short(value: str) -> str:
    """o-abc or ou-ab12-cdef for an organization or OU ARN; an account id as it is."""
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def describe(shared: Shared) -> str:
    parts = [
        f"{kind} {', '.join(short(v) for v in shared.get(kind, []))}"
        for kind in ("accounts", "organizations", "ous")
        if shared.get(kind)
    ]
    return "; ".join(parts) or "no one"


def shared_with(run: Context, provider: str) -> dict[tuple[str, str, str], list[str]]:
    """(account, region, image id) -> with whom the database says the image is shared, in one
    read and no cloud call: for `doit images`."""
    rows = run.results.read("SELECT account, region, image_id, shared FROM shares WHERE provider=?", (provider,))
    out: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        shared: Shared = json.loads(r["shared"])
        key = (str(r["account"]), str(r["region"]), str(r["image_id"]))
        out[key] = [v for kind in ("accounts", "organizations", "ous") for v in shared.get(kind, [])]
    return out


def forget(run: Context, region: str, image_id: str) -> None:
    """A disabled or deregistered image has no launch permissions left (AWS removes them on
    DisableImage): drop its record, so re-enabling it would share it anew."""
    with run.results.write() as con:
        con.execute(
            "DELETE FROM shares WHERE provider=? AND account=? AND region=? AND image_id=?",
            (run.options.provider, run.provider.account(), region, image_id),
        )
    _recorded(run, region).pop(image_id, None)
