"""What a fleet command may use of the command line it runs in: its values and the lower
stages' parts. The cli's Session provides it; fleet code never imports the cli."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tasks.catalog.load import Catalog, Customer, Role
from tasks.inputs.statcache import StatCache
from tasks.models import ImageKey, Options
from tasks.providers.base import CloudImage
from tasks.records.results import Results

if TYPE_CHECKING:
    from tasks.build.packer_plugins import Plugins
    from tasks.inputs.ansible_run import AnsibleContent
    from tasks.records.exports import Exports


class Context(Protocol):
    catalog: Catalog
    options: Options
    customer: Customer
    state: Path
    results: Results
    statcache: StatCache
    offline: bool  # read the records only, ask no cloud (images, why)

    @property
    def provider(self) -> Any: ...

    @property
    def render_as(self) -> str: ...

    @property
    def exports(self) -> Exports: ...

    @property
    def ansible(self) -> AnsibleContent: ...

    @property
    def plugins(self) -> Plugins: ...

    def say(self, text: str) -> None: ...

    def fingerprint(self, key: ImageKey) -> tuple[str, dict[str, Any]]: ...

    def cloud_images(self, region: str) -> dict[str, list[CloudImage]]: ...

    def playbook(self, role: Role) -> tuple[str | None, bool]: ...
