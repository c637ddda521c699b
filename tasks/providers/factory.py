"""The provider a command line names, made on first cloud use (its SDK imported only then)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.catalog.load import Catalog, Customer
from tasks.errors import KilnError


def make_provider(name: str, catalog: Catalog, customer: Customer, state: Path, distros: dict[str, Any]) -> Any:
    """distros: the chosen ones; the vendor lookup asks for these distros' images only."""
    if name == "sandbox":
        from tasks.providers.sandbox import SandboxProvider

        return SandboxProvider(catalog, state, distros)
    if name == "aws":
        from tasks.providers.aws import AwsProvider

        return AwsProvider(distros, state)
    if name == "local":
        from tasks.providers.local import LocalProvider

        return LocalProvider(distros, state)
    if name == "azure":
        from tasks.providers.azure import AzureProvider

        return AzureProvider(distros, customer, state)
    raise KilnError(f"variable provider: provider '{name}' is not available yet; use aws, sandbox or azure")
