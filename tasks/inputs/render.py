"""Jinja2 (StrictUndefined) templates rendered to Packer HCL2, then `packer fmt`.

What is rendered depends only on content (role, distro, customer settings, provider kind);
everything per region or per machine is a Packer variable in the generated var file, so the
rendered text is the same for every region and every checkout.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.catalog.load import Catalog, Customer, Distro, Role
from tasks.errors import KilnError
from tasks.packer_bin import packer_path, packer_version

TEMPLATES = "packer/_templates"
# Which shared template builds for each provider.
PROVIDER_TEMPLATE = {
    "aws": "amazon-ebs.pkr.hcl.j2",
    "sandbox": "amazon-ebs.pkr.hcl.j2",
    "azure": "azure-arm.pkr.hcl.j2",
    "local": "local-rootfs.pkr.hcl.j2",
}


def template_for(catalog: Catalog, role: Role, provider: str) -> tuple[Path, str]:
    override = role.template_override(catalog.root)
    if override is not None:
        return override, f"packer/{role.name}/{override.name}"
    name = PROVIDER_TEMPLATE.get(provider)
    if name is None:
        raise KilnError(f"variable provider: no Packer template for provider '{provider}' in {TEMPLATES}/")
    return catalog.root / TEMPLATES / name, f"{TEMPLATES}/{name}"


def template_inputs(catalog: Catalog, role: Role, provider: str) -> list[Path]:
    """Files a render depends on (doit file_dep)."""
    files = sorted(p for p in (catalog.root / TEMPLATES).iterdir() if p.is_file())
    override = role.template_override(catalog.root)
    return [*files, *([override] if override else [])]


_IDENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def hcl_escape(value: Any) -> str:
    """Every printed value, made literal inside an HCL quoted string: quotes, backslashes and
    newlines escaped, and template sequences (${, %{) doubled so Packer never interprets them."""
    text = str(value)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text.replace("${", "$${").replace("%{", "%%{")


def check_values(shown: str, values: Any, prefix: str = "") -> None:
    """A value a Packer template cannot hold literally is one line naming its file and key."""
    if isinstance(values, dict):
        for k, v in values.items():
            check_values(shown, v, f"{prefix}{k}.")
        return
    if isinstance(values, list):
        for n, v in enumerate(values):
            check_values(shown, v, f"{prefix}{n}.")
        return
    if isinstance(values, str):
        bad = next((c for c in values if (ord(c) < 32 and c not in "\n\t") or ord(c) == 127), None)
        if bad is not None:
            raise KilnError(
                f"{shown}: key '{prefix.rstrip('.')}': the value holds the control character {bad!r}, which no"
                " Packer template can carry; use plain text (newlines and tabs are fine)"
            )


def check_context(role: Role, distro: Distro, customer: Customer) -> None:
    check_values(role.conf.path, role.conf.values)
    check_values(distro.conf.path, distro.conf.values)
    check_values(customer.conf.path, customer.conf.content())
    for key in customer.conf.get("ansible_vars", {}):
        if not key or key[0].isdigit() or not set(key) <= _IDENT:
            raise KilnError(
                f"{customer.conf.path}: key 'ansible_vars.{key}': not a valid Ansible variable name;"
                " use letters, digits and '_', not starting with a digit"
            )


def context(
    role: Role, distro: Distro, customer: Customer, provider: str, playbook: str | None, verify: str | None = None
) -> dict[str, Any]:
    """verify: the role's verify play, a second Ansible provisioner after the role's play."""
    check_context(role, distro, customer)
    return {
        # parent: azure-arm starts a root from the marketplace and a child from a managed image.
        "role": {
            "name": role.name,
            "role_id": role.role_id,
            "description": role.description,
            "playbook": playbook,
            "parent": role.parent,
            "verify": verify if playbook else None,
        },
        "distro": {"name": distro.name, **distro.conf.values},
        "customer": {"name": customer.name, **customer.conf.content()},
        # No playbook, nothing to reach: the root needs no SSH, even on AWS. The sandbox's
        # instances have no machine behind them to reach.
        "provider": {"name": provider, "communicator": "ssh" if playbook and provider != "sandbox" else "none"},
    }


def render_text(
    catalog: Catalog,
    role: Role,
    distro: Distro,
    customer: Customer,
    provider: str,
    playbook: str | None,
    extensions: Sequence[Any] = (),
) -> str:
    """The template rendered; extensions: Jinja2 extensions (the lint's line markers)."""
    import jinja2  # lazily: `doit list` does not pay for it

    path, shown = template_for(catalog, role, provider)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(path.parent), str(catalog.root / TEMPLATES)]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # Every {{ }} of a template lands inside an HCL string: printed values are escaped.
        finalize=hcl_escape,
        extensions=list(extensions),
    )
    try:
        verify = role.verify_play(catalog.root) if playbook else None
        return env.get_template(path.name).render(context(role, distro, customer, provider, playbook, verify))
    except jinja2.TemplateSyntaxError as err:
        where = err.filename or shown
        with contextlib.suppress(ValueError):
            where = str(Path(where).relative_to(catalog.root))
        raise KilnError(f"{where}:{err.lineno}: template syntax error: {err.message}") from None
    except jinja2.UndefinedError as err:
        raise KilnError(
            f"{shown}: undefined template variable: {err.message}; the context has role, distro, customer, provider"
        ) from None


def packer_fmt(path: Path) -> None:
    packer_version()  # refuses a Packer older than the floor before it misreads our HCL
    proc = subprocess.run([packer_path(), "fmt", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise KilnError(
            f"{path}: packer fmt failed (the template renders to invalid HCL): {detail[0] if detail else proc.returncode}"
        )


def write_rendered(text: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.pkr.hcl")
    tmp.write_text(text)
    try:
        packer_fmt(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
