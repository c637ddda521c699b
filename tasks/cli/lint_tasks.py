"""`doit lint`: the pre-flight that costs no cloud money. Every role's template, rendered for the
AWS builder with its real provisioner blocks (both Ansible modes: the command line's distros plus
one distro of each mode from the catalog), goes through `packer validate` with a placeholder
variable file; every playbook goes through `ansible-playbook --syntax-check`. Each check is a doit
task with file dependencies, so an unchanged catalog costs only doit's file checks, and every
image task depends on its role's and distro's checks: a broken template or playbook stops the
run before anything is spent. (doit dispatches an image's dependencies in order: its checks come
before its render and its parent's tree. With `-n N`, an ancestor whose own checks passed may
start while a descendant's checks still run.)

A finding is a mistake in the user's files (exit 3, as every such mistake) in one line naming the file and line:
for HCL the template line (packer/_templates/...), mapped back from the rendered file's line
through markers the lint's render puts on every line, and the rendered file:line too.

Imported by `doit list`: Jinja2 and the subprocess work are imported inside the actions only.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.checks.lint import (
    LINT_PROVIDER,
    LINT_VERSION,
    lint_distros,
    playbook_check,
    playbook_inputs,
    syntax_check,
    template_check,
    validate_template,
)
from tasks.cli import failures
from tasks.cli.session import Session
from tasks.errors import KilnError


@dataclass
class LintRun:
    """What one command line's lint did, for the summary line."""

    checks: int = 0
    ran: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self) -> None:
        with self.lock:
            self.ran += 1


def lint_tasks(root: Path) -> Iterator[dict[str, Any]]:
    from doit.tools import config_changed

    from tasks.cli.command_line import current_run
    from tasks.inputs.render import template_inputs

    run = current_run(root)
    catalog, o = run.catalog, run.options
    lint = LintRun()
    playbooks = [r.playbook for r in catalog.roles.values() if r.playbook is not None]
    playbooks += [v for r in catalog.roles.values() if (v := r.verify_play(catalog.root)) is not None]
    if o.playbook:
        playbooks.append(o.playbook)
    names: list[str] = []
    walked: dict[Path, list[Path]] = {}
    for playbook in dict.fromkeys(playbooks):
        name = playbook_check(playbook)
        names.append(name)
        yield {
            "basename": "_lint",
            "name": name.split(":", 1)[1],
            "title": lambda task, p=playbook: f"lint {p}",
            "actions": [(_syntax_action, [run, lint, name, playbook])],
            "file_dep": [str(f) for f in playbook_inputs(catalog.root, playbook, walked)],
            "uptodate": [config_changed(LINT_VERSION)],
        }
    customer_toml = str(catalog.root / "customers" / o.customer / "customer.toml")
    plugins_toml = catalog.root / "packer" / "plugins.toml"
    distros = lint_distros(catalog, o.distros)
    for role in catalog.roles.values():
        role_files = [
            *(str(f) for f in template_inputs(catalog, role, LINT_PROVIDER)),
            str(catalog.root / "packer" / role.name / "role.toml"),
            customer_toml,
            # Not the playbooks: Packer sees only their paths (a verify play's presence is in
            # the uptodate below), so editing one re-validates no template.
            # The plugin versions Packer 1.7 and newer validate with (not part of any fingerprint).
            *([str(plugins_toml)] if plugins_toml.exists() else []),
        ]
        for distro in distros:
            name = template_check(role.name, distro, o.customer)
            names.append(name)
            target = lint_path(run, role.name, distro)
            files = [*role_files, str(catalog.root / "distros" / distro / "distro.toml")]
            yield {
                "basename": "_lint",
                "name": name.split(":", 1)[1],
                "title": lambda task, r=role.name, d=distro: f"lint {r}/{d}",
                "actions": [(_validate_action, [run, lint, name, role.name, distro, target])],
                "file_dep": files,
                "targets": [str(target)],
                "uptodate": [config_changed(f"{LINT_VERSION} verify={role.verify_play(catalog.root)}")],
                "clean": True,
            }
    lint.checks = len(names)

    def summary() -> None:
        took = time.monotonic() - lint.started
        if lint.ran == 0:
            text = f"all {lint.checks} checks up to date"
        else:
            text = f"{lint.checks} checks ok ({lint.ran} run, {lint.checks - lint.ran} up to date) in {took:.1f}s"
        sys.stderr.write(f"kiln: lint: {text}\n")
        sys.stderr.flush()

    yield {
        "basename": "lint",
        "doc": "pre-flight, no cloud: packer validate every template (both Ansible modes), ansible-playbook --syntax-check every playbook",
        "actions": [summary],
        "task_dep": names,
        "uptodate": [False],
        "verbosity": 2,
    }


def lint_path(run: Session, role: str, distro: str) -> Path:
    """Where the lint's render goes: beside, never over, the build's renders."""
    return run.state / "lint" / run.options.customer / distro / f"{role}.pkr.hcl"


def _validate_action(run: Session, lint: LintRun, name: str, role: str, distro: str, target: Path) -> object:
    def go() -> None:
        validate_template(run.catalog, run.customer, run.state, run.plugins, role, distro, target)
        lint.done()

    return failures.action(run.failures, name, go)


def _syntax_action(run: Session, lint: LintRun, name: str, playbook: str) -> object:
    def go() -> None:
        try:
            syntax_check(run.catalog, run.state, playbook, run.ansible.layout(playbook).env())
        except KilnError as found:
            if "not found" not in str(found):
                raise
            # Ansible names one folder; kiln's own search names every place it looked.
            run.ansible.play(playbook)
            raise
        lint.done()

    return failures.action(run.failures, name, go)
