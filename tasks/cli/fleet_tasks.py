"""doit tasks for running a catalog across regions and accounts: validate, init-region, why,
inputs, images, revoke, prune, cleanup, sync. Each always runs (uptodate False), prints its answer on stdout and
its status on stderr, and reads its variables inside the action."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.cli import failures
from tasks.cli.command_line import current_run
from tasks.cli.options import cmdline_vars
from tasks.cli.session import Session


def _regions(run: Session) -> list[str]:
    """Regions named on the command line, else the customer's and every one the database knows."""
    if "region" in cmdline_vars():
        return list(run.options.regions)
    known = run.results.read(
        "SELECT DISTINCT region FROM images WHERE provider=? AND customer=?",
        (run.options.provider, run.options.customer),
    )
    return sorted(set(run.options.regions) | {str(r["region"]) for r in known})


def _aws_only(run: Session, command: str) -> None:
    if run.options.provider not in ("aws", "sandbox"):
        from tasks.errors import KilnError

        raise KilnError(f"variable provider: doit {command} works with aws and sandbox, not {run.options.provider} yet")


def _aws_only_or_local(run: Session, command: str) -> None:
    if run.options.provider == "azure":
        from tasks.errors import KilnError

        raise KilnError(f"variable provider: doit {command} works with aws, sandbox and local, not azure yet")


def _task(name: str, doc: str, body: Callable[..., str], **extra: Any) -> dict[str, Any]:
    def action(**kwargs: Any) -> object:
        def go() -> None:
            out = body(**kwargs)
            sys.stdout.write(out)
            sys.stdout.flush()

        return failures.action(failures.FAILURES, name, go)

    if "pos_arg" in extra:
        # doit hands the positional arguments to an action parameter of that name.
        def with_args(pos: list[str]) -> object:
            return action(pos=pos)

        act: Callable[..., object] = with_args
    else:
        act = action
    return {"basename": name, "doc": doc, "actions": [act], "uptodate": [False], "verbosity": 2, **extra}


def fleet_tasks(root: Path) -> Iterator[dict[str, Any]]:
    run = current_run(root)
    o = run.options
    renders = [f"_render:{role}/{d}/{run.render_label}/{o.customer}" for role in run.catalog.roles for d in o.distros]

    def validate() -> str:
        from tasks.fleet.validate import validate_command

        _aws_only(run, "validate")
        return validate_command(run)

    def init_region() -> str:
        from tasks.fleet.init_region import init_region_command

        _aws_only(run, "init-region")
        return init_region_command(run, cmdline_vars())

    def why(pos: list[str]) -> str:
        from tasks.fleet.why import why_command

        named = cmdline_vars().get("role")
        return why_command(run, [*pos, *([r.strip() for r in named.split(",")] if named else [])])

    def inputs(pos: list[str]) -> str:
        from tasks.fleet.inputs import inputs_command

        named = cmdline_vars().get("role")
        roles = [*pos, *([r.strip() for r in named.split(",")] if named else [])]
        return inputs_command(run, roles, cmdline_vars().get("format", "table"))

    def images() -> str:
        from tasks.fleet.inventory import images_command

        return images_command(run, cmdline_vars().get("format", "table"))

    def revoke() -> str:
        from tasks.fleet.revoke import revoke_command

        named = cmdline_vars()
        return revoke_command(run, named.get("image", ""), named.get("reason", ""))

    def prune() -> str:
        from tasks.fleet.prune import prune_command

        named = cmdline_vars()
        return prune_command(run, _regions(run), named.get("keep", ""), named.get("apply", "0") == "1")

    def cleanup() -> str:
        from tasks.fleet.cleanup import cleanup_command

        _aws_only(run, "cleanup")
        return cleanup_command(run, _regions(run), cmdline_vars().get("apply", ""))

    def sync() -> str:
        from tasks.fleet.sync import sync_command

        return sync_command(run, _regions(run))

    def verify(pos: list[str]) -> str:
        from tasks.fleet.verify import verify_command

        return verify_command(run, pos)

    def promote(pos: list[str]) -> str:
        from tasks.fleet.promote import promote_command

        _aws_only_or_local(run, "promote")
        named = cmdline_vars()
        return promote_command(run, pos, named.get("channel", ""), named.get("image", ""))

    def channels() -> str:
        from tasks.fleet.channels import channels_command

        named = cmdline_vars()
        return channels_command(run, named.get("role", ""), named.get("format", "table"))

    def packages(pos: list[str]) -> str:
        from tasks.fleet.packages import packages_command

        return packages_command(run, pos)

    def diff(pos: list[str]) -> str:
        from tasks.fleet.diff import diff_command

        v = cmdline_vars()
        return diff_command(
            run, pos, v.get("channel", ""), v.get("image", ""), v.get("image2", ""), v.get("format", "table")
        )

    def shell(pos: list[str]) -> str:
        from tasks.fleet.shell import shell_command

        return shell_command(run, pos, cmdline_vars().get("image", ""))

    def graph() -> str:
        from tasks.fleet.graph import graph_command

        return graph_command(run, cmdline_vars().get("format", "dot"))

    yield _task("validate", "pre-flight: Packer, credentials, instance profile, bucket, regions, network", validate)
    yield _task("init-region", "write customers/<c>/package/<region>.toml from the region's network", init_region)
    yield _task(
        "why",
        "why <role> would (not) be rebuilt: a diff of the stored and current inputs",
        why,
        pos_arg="pos",
        task_dep=renders,
    )
    yield _task(
        "inputs",
        "inputs <role>: every file its image depends on, and why (format=json for machines)",
        inputs,
        pos_arg="pos",
    )
    yield _task(
        "images",
        "the current image per role, distro and region (format=table|json|toml|properties)",
        images,
        task_dep=renders,
    )
    yield _task("revoke", 'mark an image revoked: image=<id> reason="..."', revoke)
    yield _task(
        "prune",
        "the lifecycle policy: list (apply=1: deprecate, disable, deregister) old images, never one in use",
        prune,
    )
    yield _task(
        "cleanup",
        "what killed builds left: kiln's build instances, Packer's key pairs and groups, untagged images (apply=1)",
        cleanup,
    )
    yield _task(
        "verify",
        "verify <role>: its verify play again against the current image's machine (local layer, sandbox target)",
        verify,
        pos_arg="pos",
    )
    yield _task(
        "promote",
        "promote <role> channel=NAME [image=ID] [force=1]: point a channel at the current (or named) image",
        promote,
        pos_arg="pos",
    )
    yield _task("channels", "every channel assignment, the current ones marked (role=..., format=json)", channels)
    yield _task(
        "packages", "packages <role>: the current image's package inventory (CycloneDX JSON)", packages, pos_arg="pos"
    )
    yield _task(
        "diff",
        "diff <role> channel=NAME (or image=A image2=B): packages added, removed, upgraded; inputs that differ",
        diff,
        pos_arg="pos",
    )
    yield _task(
        "shell",
        "shell <role> provider=local [image=LAYER]: a root shell in its layer, unmounted on exit (changes discarded)",
        shell,
        pos_arg="pos",
    )
    yield _task(
        "graph",
        "the lineage as Graphviz: format=dot (stdout), svg or png (a file in the state folder)",
        graph,
        task_dep=renders,
    )
    yield _task("sync", "rebuild the results database from the cloud's tags", sync)
