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

from .catalog import Catalog, Customer, Distro, Role
from .errors import KilnError
from .packer_bin import packer_path, packer_version

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


def context(role: Role, distro: Distro, customer: Customer, provider: str, playbook: str | None) -> dict[str, Any]:
    return {
        # parent: azure-arm starts a root from the marketplace and a child from a managed image.
        "role": {
            "name": role.name,
            "role_id": role.role_id,
            "description": role.description,
            "playbook": playbook,
            "parent": role.parent,
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
        extensions=list(extensions),
    )
    try:
        return env.get_template(path.name).render(context(role, distro, customer, provider, playbook))
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
