"""kiln: make for machine images. `doit list` shows the roles; `doit <role> name=value ...` builds.

Everything lives in tasks/; this file only hands doit its configuration and the generators.
"""

from pathlib import Path

from tasks.cli.config import doit_config
from tasks.cli.fleet_tasks import fleet_tasks
from tasks.cli.image_tasks import image_tasks, sandbox_tasks
from tasks.cli.lint_tasks import lint_tasks
from tasks.cli.watch import watch_tasks

ROOT = Path(__file__).resolve().parent
DOIT_CONFIG = doit_config(ROOT)


def task_images():  # type: ignore[no-untyped-def]
    """One task per role (its images per distro and region), ancestors first."""
    yield from image_tasks(ROOT)


def task_sandbox():  # type: ignore[no-untyped-def]
    """The sandbox's EC2 API on loopback."""
    yield from sandbox_tasks(ROOT)


def task_fleet():  # type: ignore[no-untyped-def]
    """Commands across regions and accounts: validate, init-region, why, images, revoke, prune, sync."""
    yield from fleet_tasks(ROOT)


def task_watch():  # type: ignore[no-untyped-def]
    """`doit watch <role> [name=value ...]`: rebuild the role whenever one of its inputs is saved."""
    yield from watch_tasks(ROOT)


def task_lint():  # type: ignore[no-untyped-def]
    """Pre-flight, no cloud: packer validate and ansible-playbook --syntax-check, re-run only on change."""
    yield from lint_tasks(ROOT)
