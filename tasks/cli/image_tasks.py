"""doit task generators: one task per image (grouped by role), the renders they depend on, and
the sandbox commands. Variables are read here, inside the generators, never at import."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidCommand
from doit.tools import config_changed

from tasks.catalog.load import Catalog, load_catalog
from tasks.checks.lint import playbook_check, template_check
from tasks.cli import failures
from tasks.cli.command_line import current_run
from tasks.cli.session import Session
from tasks.inputs.render import render_text, template_inputs, write_rendered
from tasks.models import ImageKey

RENDER_VERSION = "1"  # bump when render.py changes what it writes


def image_tasks(root: Path) -> Iterator[dict[str, Any]]:
    run = current_run(root)
    catalog, o = run.catalog, run.options
    # A missing playbook is a catalog mistake: say so before anything runs. Only existence is
    # checked here (a stat); parsing waits for the build so `doit list` stays cheap.
    for role in catalog.roles.values():
        if role.playbook is not None and not (catalog.root / role.playbook).is_file():
            raise InvalidCommand(
                f"{role.playbook}: playbook of role {role.name} does not exist (packer/{role.name}/role.toml)"
            )
    for role in catalog.roles.values():
        yield {"basename": role.name, "name": None, "doc": role.description}
        for distro in o.distros:
            render = f"_render:{role.name}/{distro}/{run.render_label}/{o.customer}"
            # The lint's checks first, flat: doit dispatches an image's dependencies in order, so
            # they run before its render and its parent's tree, and a broken template or playbook
            # stops the run before anything is spent.
            lint = [template_check(role.name, distro, o.customer)]
            # provider=local spends nothing: its build checks the playbooks beside the play
            # (tasks/checks/beside.py), so the edit loop waits for the play alone.
            if role.playbook is not None and o.provider != "local":
                lint.insert(0, playbook_check(role.playbook))
                if (verify := role.verify_play(catalog.root)) is not None:
                    lint.insert(0, playbook_check(verify))  # the verify play is syntax-checked too
                if o.playbook:
                    lint.insert(0, playbook_check(o.playbook))  # playbook=PATH is checked too
            for region in o.regions:
                key = ImageKey(role.name, distro, region)
                deps = [*lint, render] + ([ImageKey(role.parent, distro, region).task] if role.parent else [])
                yield {
                    "basename": role.name,
                    "name": f"{distro}@{region}",
                    "title": lambda task, k=key: k.label,
                    "actions": [(_build, [run, key])],
                    "uptodate": [(_is_current, [run, key])],
                    "task_dep": deps,
                    "verbosity": 2,
                }
        for distro in o.distros:
            yield _render_task(run, catalog, role.name, distro)


def _render_task(run: Session, catalog: Catalog, role: str, distro: str) -> dict[str, Any]:
    o = run.options
    files = [
        *template_inputs(catalog, catalog.roles[role], run.render_as),
        catalog.root / "packer" / role / "role.toml",
        catalog.root / "distros" / distro / "distro.toml",
        catalog.root / "customers" / o.customer / "customer.toml",
    ]
    # A verify play adds a provisioner: the render changes when one appears or goes.
    verify = catalog.roles[role].verify_play(catalog.root) if catalog.roles[role].playbook else None
    if verify is not None:
        files.append(catalog.root / verify)
    target = run.rendered_path(role, distro)
    name = f"_render:{role}/{distro}/{run.render_label}/{o.customer}"
    return {
        "basename": "_render",
        "name": f"{role}/{distro}/{run.render_label}/{o.customer}",
        "actions": [(_render, [run, name, role, distro, target])],
        "file_dep": [str(f) for f in files],
        "targets": [str(target)],
        "uptodate": [config_changed(f"{RENDER_VERSION} verify={verify}")],
        "clean": True,
    }


def _render(run: Session, name: str, role: str, distro: str, target: Path) -> object:
    def go() -> None:
        catalog = run.catalog
        r = catalog.roles[role]
        text = render_text(catalog, r, catalog.distros[distro], run.customer, run.render_as, r.playbook)
        write_rendered(text, target)

    return failures.action(run.failures, name, go)


def _is_current(task: Any, values: Any, run: Session, key: ImageKey) -> bool:
    return failures.uptodate(run.failures, key.task, lambda: run.is_current(key) and _shared(run, key))


def _build(run: Session, key: ImageKey) -> object:
    def go() -> None:
        run.build(key)
        _shared(run, key)

    return failures.action(run.failures, key.task, go)


def _shared(run: Session, key: ImageKey) -> bool:
    """The image is there: it gets the customer's launch permissions (no call when the
    results database says it has them already)."""
    from tasks.fleet.sharing import share_current

    share_current(run, key)
    return True


# -- sandbox commands --------------------------------------------------------------------------


def sandbox_tasks(root: Path) -> Iterator[dict[str, Any]]:
    def start() -> object:
        from tasks.providers.sandbox_process import ensure_running

        def go() -> None:
            catalog = load_catalog(root)
            failures.FAILURES.state = catalog.state
            endpoint = ensure_running(catalog)
            sys.stderr.write(
                "kiln: sandbox EC2 API (fake keys: AWS_ACCESS_KEY_ID=testing); stop it with: doit sandbox-stop\n"
            )
            sys.stdout.write(endpoint + "\n")

        return failures.action(failures.FAILURES, "sandbox", go)

    def stop() -> object:
        from tasks.providers.sandbox_process import stop as stop_sandbox

        def go() -> None:
            def say(text: str) -> None:
                sys.stderr.write(f"kiln: {text}\n")

            stopped = stop_sandbox(load_catalog(root), say)
            sys.stderr.write("kiln: sandbox stopped\n" if stopped else "kiln: sandbox was not running\n")

        return failures.action(failures.FAILURES, "sandbox-stop", go)

    yield {
        "basename": "sandbox",
        "doc": "start the sandbox EC2 API (moto, loopback) if needed; print its endpoint",
        "actions": [start],
        "uptodate": [False],
        "verbosity": 2,
    }
    yield {
        "basename": "sandbox-stop",
        "doc": "stop the sandbox started by provider=sandbox or doit sandbox",
        "actions": [stop],
        "uptodate": [False],
        "verbosity": 2,
    }
