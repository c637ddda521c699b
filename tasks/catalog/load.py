"""The catalog as data: roles (packer/<role>/role.toml), distros, customers, repository defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.catalog.schema import Field, Loaded, load, read_toml
from tasks.errors import KilnError, valid_list

# [lifecycle] (customer.toml, overridden key by key in role.toml): what `doit prune` does with
# old images. Placement of images in time, never content. Checked by tasks/catalog/lifecycle.py.
_LIFECYCLE = {
    "keep": Field(int),
    "deprecate_after": Field(str),
    "disable_after": Field(str),
    "deregister_after": Field(str),
}
ROLE_SCHEMA = {
    "description": Field(str, required=True),
    "parent": Field(str),
    "role_id": Field(str, content=True),
    # false: no provisioning (the root); default provision/ansible/<role>.yml
    "playbook": Field((str, bool)),
    # The role's test (like Molecule's verify.yml), run on the machine after the play and before
    # the image: default provision/ansible/verify/<role>.yml when it exists; false: none.
    "verify": Field((str, bool)),
    "inputs": Field(list, default=[]),
    # e.g. "30d": the role's content changes with time (package updates), so the start of the
    # current period is part of its fingerprint.
    "refresh": Field(str),
    # Placement, not content (never in the fingerprint): what this role builds on, overriding
    # the customer's instance_type and spot.
    "instance_type": Field((str, list)),
    "spot": Field(bool),
    "lifecycle": Field(dict, table=_LIFECYCLE),
}

_AWS_DISTRO = {
    "owner": Field(str, required=True, content=True),
    "name": Field(str, required=True, content=True),
    "architecture": Field(str, default="x86_64", content=True),
}
_AZURE_DISTRO = {
    "publisher": Field(str, required=True, content=True),
    "offer": Field(str, required=True, content=True),
    "sku": Field(str, required=True, content=True),
}
_LOCAL_DISTRO = {"suite": Field(str, required=True, content=True)}
DISTRO_SCHEMA = {
    "description": Field(str, required=True),
    "family": Field(str, required=True, content=True),
    "ssh_user": Field(str, required=True, content=True),
    "ansible": Field(str, required=True, content=True),
    "python": Field(str, default="/usr/bin/python3", content=True),
    "aws": Field(dict, required=True, table=_AWS_DISTRO, content=True),
    "azure": Field(dict, table=_AZURE_DISTRO, content=True),
    "local": Field(dict, table=_LOCAL_DISTRO, content=True),
}
ANSIBLE_MODES = ("local", "remote")

# provider=azure: where images live. Placement, not content (like instance_type); no secret.
_AZURE_CUSTOMER = {
    "subscription_id": Field(str, required=True),
    "resource_group": Field(str, required=True),
    "locations": Field(list, required=True),
    "vm_size": Field(str, default="Standard_B2s"),
}
_DISTRIBUTION = {
    "accounts": Field(list, default=[]),
    "organizations": Field(list, default=[]),
    "ous": Field(list, default=[]),
    "encrypt": Field(bool, default=False),
    "kms_keys": Field(dict, free_table=True, default={}),
}
_EXPORT = {"properties": Field(str), "toml": Field(str), "json": Field(str)}
_EXPORTS = {p: Field(dict, table=_EXPORT) for p in ("aws", "sandbox", "local", "azure")}
CUSTOMER_SCHEMA = {
    "description": Field(str, required=True),
    "provider": Field(str, default="aws"),
    "distro": Field(str, required=True),
    "regions": Field(list, required=True),
    # A type or a list of types: with spot = true Packer asks EC2 Fleet for any of them
    # (spot_instance_types); on demand it builds on the first.
    "instance_type": Field((str, list), default="t3.small"),
    "spot": Field(bool, default=False),
    # Where a fingerprint needed in several regions of one run is built (then copied to the
    # others); default: the first region named.
    "home_region": Field(str),
    "instance_profile": Field(str, default="packer-build"),
    # Playbooks read secrets from here at build time through the instance profile: which
    # bucket is content, the secrets themselves never touch kiln.
    "secrets_bucket": Field(str, content=True),
    "tags": Field(dict, free_table=True, default={}, content=True),
    "ansible_vars": Field(dict, free_table=True, default={}, content=True),
    "exports": Field(dict, table=_EXPORTS, default={}),
    # Teammates share one DynamoDB table per account and region for build leases.
    "lease_table": Field(str, default="kiln-build-leases"),
    "lease_seconds": Field(int, default=600),
    "azure": Field(dict, table=_AZURE_CUSTOMER),
    # Who may launch the images and how copies are encrypted (tasks/catalog/distribution.py): placement.
    "distribution": Field(dict, table=_DISTRIBUTION),
    "lifecycle": Field(dict, table=_LIFECYCLE),
}
PACKAGE_SCHEMA = {
    "vpc_id": Field(str),
    "subnet_id": Field(str),
    # How Packer's SSH reaches the build instance, e.g. through a VPN into a private subnet.
    "ssh_interface": Field(str),
    "associate_public_ip_address": Field(bool),
    "security_group_ids": Field(list),
    "temporary_security_group_source_cidrs": Field(list),
}
SSH_INTERFACES = ("public_ip", "private_ip", "session_manager")
PROJECT_SCHEMA = {"customer": Field(str, required=True), "state": Field(str, default=".kiln")}

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


def valid_name(name: str) -> bool:
    # A set, not a regex: compiling patterns is a measurable part of `doit list`.
    return bool(name) and name[0] not in "._-" and set(name) <= _NAME_CHARS


@dataclass(frozen=True)
class Role:
    name: str
    conf: Loaded

    @property
    def description(self) -> str:
        return str(self.conf["description"])

    @property
    def parent(self) -> str | None:
        parent = self.conf.get("parent")
        return str(parent) if parent else None

    @property
    def role_id(self) -> str:
        return str(self.conf.get("role_id", self.name))

    @property
    def playbook(self) -> str | None:
        value = self.conf.get("playbook")
        if value is False:
            return None
        if value is None or value is True:
            return f"provision/ansible/{self.name}.yml"
        return str(value)

    def verify_play(self, root: Path) -> str | None:
        """The verify play's path (repository-relative), or None: a role without a play has no
        machine to test, and the default file is optional while a named one must exist."""
        value = self.conf.get("verify")
        if value is False or self.playbook is None:
            return None
        if value is None or value is True:
            default = f"provision/ansible/verify/{self.name}.yml"
            if (root / default).is_file():
                return default
            if value is True:
                raise KilnError(
                    f"{self.conf.path}: key 'verify' is true but {default} does not exist; create it or name the file"
                )
            return None
        if not (root / str(value)).is_file():
            raise KilnError(
                f"{self.conf.path}: key 'verify': {value} does not exist; name a playbook file in the repository"
            )
        return str(value)

    @property
    def inputs(self) -> list[str]:
        return list(self.conf.get("inputs", []))

    @property
    def refresh_days(self) -> int | None:
        value = self.conf.get("refresh")
        if value is None:
            return None
        text = str(value)
        if not (text.endswith("d") and text[:-1].isdigit() and int(text[:-1]) >= 1):
            raise KilnError(f"{self.conf.path}: key 'refresh' must be a number of days like \"30d\", not {value!r}")
        return int(text[:-1])

    def template_override(self, root: Path) -> Path | None:
        path = root / "packer" / self.name / "template.pkr.hcl.j2"
        return path if path.exists() else None


@dataclass(frozen=True)
class Distro:
    name: str
    conf: Loaded

    @property
    def ansible_mode(self) -> str:
        return str(self.conf["ansible"])


@dataclass(frozen=True)
class Customer:
    name: str
    conf: Loaded
    root: Path

    def package(self, region: str) -> dict[str, Any]:
        """Network placement for a region: customers/<c>/package/<region>.toml, if any (the
        keys it sets; an empty string or list is as good as unset)."""
        path = self.root / "customers" / self.name / "package" / f"{region}.toml"
        if not path.exists():
            return {}
        shown = str(path.relative_to(self.root))
        loaded = load(path, PACKAGE_SCHEMA, shown)
        values = {k: v for k, v in loaded.values.items() if v is not None and v != "" and v != []}
        check_package(values, shown, self)
        return values

    def azure(self) -> dict[str, Any]:
        """The [azure] table, which provider=azure needs (the schema checked its keys if present)."""
        conf: dict[str, Any] | None = self.conf.get("azure")
        if not conf:
            raise KilnError(
                f"customers/{self.name}/customer.toml: missing table [azure] (subscription_id, resource_group,"
                " locations) needed by provider=azure"
            )
        if not conf["locations"]:
            raise KilnError(f"customers/{self.name}/customer.toml: key 'azure.locations' is empty; list a location")
        return conf


def check_instance_types(value: object, shown: str) -> None:
    """A type or a non-empty list of types (the schema checked it is a string or a list)."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise KilnError(
                f'{shown}: key \'instance_type\' must be a type or a list of types, e.g. ["t3.small", "t3a.small"]'
            )
    elif isinstance(value, str) and not value:
        raise KilnError(f"{shown}: key 'instance_type' is empty; name a type, e.g. \"t3.small\"")


def check_package(values: dict[str, Any], shown: str, customer: Customer) -> None:
    """What Packer would refuse or misread, said as the file and key."""
    import ipaddress

    iface = values.get("ssh_interface")
    if iface is not None and iface not in SSH_INTERFACES:
        raise KilnError(f"{shown}: key 'ssh_interface' must be one of {valid_list(SSH_INTERFACES)}, not {iface!r}")
    if iface == "session_manager" and not customer.conf.get("instance_profile"):
        raise KilnError(
            f'{shown}: ssh_interface = "session_manager" needs an instance profile with SSM permissions'
            f" (AmazonSSMManagedInstanceCore): set instance_profile in customers/{customer.name}/customer.toml"
        )
    for group in values.get("security_group_ids", []):
        if not group.startswith("sg-"):
            raise KilnError(f"{shown}: key 'security_group_ids': {group!r} is not a security group id (sg-...)")
    for cidr in values.get("temporary_security_group_source_cidrs", []):
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            raise KilnError(
                f"{shown}: key 'temporary_security_group_source_cidrs': {cidr!r} is not a CIDR, e.g. \"10.8.0.0/16\""
            ) from None
    if values.get("security_group_ids") and values.get("temporary_security_group_source_cidrs"):
        raise KilnError(
            f"{shown}: security_group_ids and temporary_security_group_source_cidrs exclude each other (Packer"
            " makes a temporary group only without security_group_ids); keep one"
        )


@dataclass(frozen=True)
class Catalog:
    root: Path
    project: Loaded
    roles: dict[str, Role]
    distros: dict[str, Distro]
    customer_names: list[str]

    @property
    def state(self) -> Path:
        return self.root / str(self.project["state"])

    def customer(self, name: str) -> Customer:
        if name not in self.customer_names:
            raise KilnError(f"variable customer: unknown customer '{name}'; valid: {valid_list(self.customer_names)}")
        path = self.root / "customers" / name / "customer.toml"
        conf = load(path, CUSTOMER_SCHEMA, f"customers/{name}/customer.toml")
        check_instance_types(conf["instance_type"], f"customers/{name}/customer.toml")
        # Imported only for a customer that has the table: `doit list` pays for no dataclass.
        if conf.get("distribution"):
            from tasks.catalog.distribution import check_distribution

            check_distribution(conf["distribution"], conf.path)
        if conf.get("lifecycle"):
            from tasks.catalog.lifecycle import check_lifecycle

            check_lifecycle(conf["lifecycle"], conf.path)
        return Customer(name, conf, self.root)

    def chain(self, role: str) -> list[Role]:
        """The role and its ancestors, root first."""
        out: list[Role] = []
        current: str | None = role
        while current is not None:
            out.append(self.roles[current])
            current = self.roles[current].parent
        return list(reversed(out))

    def topological(self) -> list[str]:
        """Role names, parents before children (then by name)."""
        return sorted(self.roles, key=lambda r: (len(self.chain(r)), r))

    def descendants(self, role: str) -> list[str]:
        return [r for r in self.roles if r != role and role in (x.name for x in self.chain(r))]


def _project(root: Path) -> Loaded:
    data: dict[str, Any] = read_toml(root / "pyproject.toml", "pyproject.toml")
    kiln = data.get("tool", {}).get("kiln")
    if not isinstance(kiln, dict):
        raise KilnError('pyproject.toml: missing table [tool.kiln] (customer = "...", state = ".kiln")')
    from tasks.catalog.schema import check

    values, _ = check(kiln, PROJECT_SCHEMA, "pyproject.toml", prefix="tool.kiln.")
    return Loaded("pyproject.toml", values)


def _dirs(path: Path) -> list[str]:
    return (
        sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        if path.is_dir()
        else []
    )


def load_catalog(root: Path) -> Catalog:
    project = _project(root)
    roles: dict[str, Role] = {}
    for name in _dirs(root / "packer"):
        shown = f"packer/{name}/role.toml"
        if not valid_name(name):
            raise KilnError(f"packer/{name}: role names are lower-case letters, digits, '.', '_' and '-'")
        roles[name] = Role(name, load(root / shown, ROLE_SCHEMA, shown))
    for role in roles.values():
        if role.parent is not None and role.parent not in roles:
            raise KilnError(
                f"packer/{role.name}/role.toml: key 'parent' names unknown role '{role.parent}'; valid: {valid_list(roles)}"
            )
        seen = {role.name}
        parent = role.parent
        while parent is not None:
            if parent in seen:
                raise KilnError(f"packer/{role.name}/role.toml: key 'parent' makes a cycle through '{parent}'")
            seen.add(parent)
            parent = roles[parent].parent
        role.refresh_days  # noqa: B018 - validates the value early
        if role.conf.get("verify") is not None:
            role.verify_play(root)  # a named verify file must exist: said before anything runs
        if role.conf.get("instance_type") is not None:
            check_instance_types(role.conf["instance_type"], f"packer/{role.name}/role.toml")
        if role.conf.get("lifecycle"):
            from tasks.catalog.lifecycle import check_lifecycle

            check_lifecycle(role.conf["lifecycle"], role.conf.path)
    distros: dict[str, Distro] = {}
    for name in _dirs(root / "distros"):
        shown = f"distros/{name}/distro.toml"
        conf = load(root / shown, DISTRO_SCHEMA, shown)
        if conf["ansible"] not in ANSIBLE_MODES:
            raise KilnError(
                f"{shown}: key 'ansible' must be one of {valid_list(ANSIBLE_MODES)}, not {conf['ansible']!r}"
            )
        distros[name] = Distro(name, conf)
    customers = _dirs(root / "customers")
    return Catalog(root, project, roles, distros, customers)
