"""The sandbox provider: the AWS provider pointed at kiln's moto server with fake keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.catalog.load import Catalog, Distro
from tasks.providers.aws import AwsProvider
from tasks.providers.sandbox_process import FAKE_KEY, ensure_running


class SandboxProvider(AwsProvider):
    name = "sandbox"
    max_attempts = 2

    def __init__(self, catalog: Catalog, state: Path, distros: dict[str, Distro]) -> None:
        super().__init__(distros, state)
        self._catalog = catalog

    def _new_session(self) -> Any:
        from tasks.providers.sdk import session

        # Started on first use, not at `doit list`.
        self._endpoint = ensure_running(self._catalog)
        return session(self._state / "cache" / "sdk", FAKE_KEY, FAKE_KEY)

    def credentials_expiry(self) -> float | None:
        return None

    def packer_vars(self, region: str) -> dict[str, str]:
        self.session()
        # The sandbox has its own default VPC: the customer's network ids mean nothing there.
        return {"ec2_endpoint": self._endpoint or ""}
