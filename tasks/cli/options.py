"""The command line's `name=value` variables, checked, with where each value came from.

Read only inside task generators: doit's get_var is empty outside its command line.
"""

from __future__ import annotations

import contextlib
import json
import sys
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from doit import doit_cmd

from tasks.catalog.load import Catalog
from tasks.errors import KilnError, valid_list
from tasks.models import Options

__all__ = ["Options", "read_options"]

PROVIDERS = ("aws", "sandbox", "local", "azure")
FORCE_VALUES = ("0", "1", "chain")
# Every variable any kiln command reads; anything else on the command line is a typo.
KNOWN_VARIABLES = (
    "region",
    "distro",
    "customer",
    "provider",
    "force",
    "playbook",
    "debug",
    "copy",
    "role",
    "image",
    "reason",
    "keep",
    "apply",
    "format",
    "vpc",
    "subnet",
    "provision",
    "channel",
    "image2",
)


def cmdline_vars() -> dict[str, str]:
    return dict(doit_cmd._CMDLINE_VARS or {})


_REGION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@cache
def aws_regions(state: Path) -> frozenset[str]:
    """Region names from botocore's endpoint data (no boto3 import). Parsing that file is a
    tenth of `doit list`, so the names are kept in the state folder, keyed by its stat."""
    spec = find_spec("botocore")
    if spec is None or spec.origin is None:
        return frozenset()
    source = Path(spec.origin).parent / "data" / "endpoints.json"
    st = source.stat()
    key = f"{source}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = state / "aws-regions.json"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return frozenset(cached["regions"])
    except (OSError, ValueError, AttributeError):
        pass
    data = json.loads(source.read_text())
    regions = sorted({r for p in data["partitions"] for r in p["regions"]})
    with contextlib.suppress(OSError):  # a read-only state folder only makes listing slower
        cache_file.write_text(json.dumps({"key": key, "regions": regions}))
    return frozenset(regions)


def _list(value: str, name: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(","))
    if not value.strip() or any(not v for v in items):
        raise KilnError(f"variable {name}: {value!r} is not a comma list of names, e.g. {name}=us-east-1,eu-west-1")
    return items


def _flag(vars_: dict[str, str], name: str, default: str = "0") -> bool:
    value = vars_.get(name, default)
    if value not in ("0", "1"):
        raise KilnError(f"variable {name}: {value!r} is not valid; valid: 0, 1")
    return value == "1"


def read_options(catalog: Catalog) -> Options:
    vars_ = cmdline_vars()
    unknown = sorted(set(vars_) - set(KNOWN_VARIABLES))
    if unknown:
        raise KilnError(f"variable {unknown[0]}: unknown variable; valid: {valid_list(KNOWN_VARIABLES)}")
    prov: dict[str, str] = {}

    def pick(name: str, default: str, source: str) -> str:
        if name in vars_:
            prov[name] = "command line"
            return vars_[name]
        prov[name] = source
        return default

    customer_name = pick("customer", str(catalog.project["customer"]), "pyproject.toml:tool.kiln.customer")
    customer = catalog.customer(customer_name)
    cfile = f"customers/{customer_name}/customer.toml"
    if (customer.conf.get("distribution") or {}).get("kms_keys"):
        from tasks.catalog.distribution import check_kms_regions

        check_kms_regions(customer.conf["distribution"], cfile, aws_regions(catalog.state))
    provider = pick("provider", str(customer.conf["provider"]), f"{cfile}:provider")
    if provider not in PROVIDERS:
        raise KilnError(
            f"variable provider ({prov['provider']}): unknown provider '{provider}'; valid: {valid_list(PROVIDERS)}"
        )
    distros = _list(pick("distro", str(customer.conf["distro"]), f"{cfile}:distro"), "distro")
    for d in distros:
        if d not in catalog.distros:
            raise KilnError(
                f"variable distro ({prov['distro']}): unknown distro '{d}'; valid: {valid_list(catalog.distros)}"
            )
    if provider == "azure":
        # Azure's regions are the customer's locations (eastus, ...), not its AWS regions.
        locations = [str(x) for x in customer.azure()["locations"]]
        regions = _list(pick("region", ",".join(locations), f"{cfile}:azure.locations"), "region")
        for r in regions:
            if r not in locations:
                raise KilnError(
                    f"variable region ({prov['region']}): unknown Azure location '{r}' for customer {customer_name};"
                    f" valid ({cfile}:azure.locations): {valid_list(locations)}"
                )
        for d in distros:
            if not catalog.distros[d].conf.get("azure"):
                raise KilnError(
                    f"distros/{d}/distro.toml: missing table [azure] (publisher, offer, sku) needed by provider=azure"
                )
    else:
        regions = _list(pick("region", ",".join(customer.conf["regions"]), f"{cfile}:regions"), "region")
    if provider in ("aws", "sandbox"):
        known = aws_regions(catalog.state)
        for r in regions:
            if known and r not in known:
                raise KilnError(
                    f"variable region ({prov['region']}): unknown AWS region '{r}'; valid: {valid_list(known)}"
                )
        home = customer.conf.get("home_region")
        if home is not None and known and home not in known:
            raise KilnError(f"{cfile}: key 'home_region': unknown AWS region '{home}'; valid: {valid_list(known)}")
    elif provider == "local":
        regions = ("local",)
        from tasks.build.rootfs import local_suite

        for d in distros:
            conf = catalog.distros[d].conf
            local_suite(d, str(conf["family"]), conf.get("local"))
    for r in regions:
        if not r or not set(r) <= _REGION_CHARS:
            raise KilnError(f"variable region: {r!r} is not a region name")
    force = vars_.get("force", "0")
    if force not in FORCE_VALUES:
        raise KilnError(f"variable force: {force!r} is not valid; valid: {valid_list(FORCE_VALUES)}")
    debug = _flag(vars_, "debug")
    if debug and provider not in ("local",) and not sys.stdin.isatty():
        # Packer's -debug stops at every step and waits for Enter.
        raise KilnError("variable debug: debug=1 needs a terminal on stdin (Packer waits for Enter at each step)")
    provision = _flag(vars_, "provision")
    if provision:
        if provider != "sandbox":
            raise KilnError(
                "variable provision: provision=1 is for provider=sandbox (the other providers always provision)"
            )
        from tasks.build.rootfs import local_suite

        for d in distros:
            conf = catalog.distros[d].conf
            if conf["ansible"] != "remote":
                raise KilnError(
                    f'distros/{d}/distro.toml: provision=1 needs ansible = "remote" (Packer\'s ansible provisioner)'
                )
            local_suite(d, str(conf["family"]), conf.get("local"))
    playbook = vars_.get("playbook") or None
    if playbook is not None and not (catalog.root / playbook).is_file():
        raise KilnError(f"variable playbook: {playbook} does not exist (a path relative to {catalog.root})")
    return Options(
        provider=provider,
        customer=customer_name,
        distros=tuple(dict.fromkeys(distros)),
        regions=tuple(dict.fromkeys(regions)),
        force=force,
        playbook=playbook,
        debug=debug,
        copy=_flag(vars_, "copy", "1"),
        provision=provision,
        provenance=prov,
    )
