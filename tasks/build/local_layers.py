"""Build one provider=local layer: an overlay on the parent's stack (the debootstrap tree for the
root) with the role's playbook applied through the chroot connection, committed by writing its
record, so the layer holds only what its play changed. Where the kernel refuses overlays in the
layers folder, a full copy of the parent instead, said once per run. A failed layer is removed,
or with debug=1 kept with the commands to look into it."""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.build import overlay
from tasks.build.rootfs import (
    PlayFailed,
    ansible_command,
    check_tools,
    copy_tree,
    debootstrap,
    human,
    local_suite,
    release,
    run_play,
)
from tasks.build.verify import STATUS as VERIFY_FAILED
from tasks.build.verify import VerifyFailed, run_verify
from tasks.catalog.load import Catalog, Customer
from tasks.errors import BuildFailed, Interrupted, KilnError
from tasks.providers.base import CloudImage
from tasks.providers.layer_stack import Lower, base_lower, is_overlay, write_lower
from tasks.records.results import Results

if TYPE_CHECKING:
    from tasks.build.spec import PendingChecks, Spec
    from tasks.inputs.plays import Plays

# Old layers are pointed out after a build when there are many or their disk runs low, so they
# never fill it silently; a statvfs, not a walk of gigabytes, keeps the edit loop fast.
WARN_LAYERS = 5
WARN_FREE = 0.15


@functools.cache
def copies_instead(layers: Path) -> str:
    """Why layers in this folder are full copies ("" when they are overlays): asked of the
    kernel once per run, and said once. A yes is remembered beside the folder for this kernel
    and this filesystem (the probe's mounts are 30 ms of the edit loop's start)."""
    layers.mkdir(parents=True, exist_ok=True)
    noted = layers.parent / "overlay-ok"
    here = f"{os.uname().release} {layers.stat().st_dev}\n"
    with contextlib.suppress(OSError):
        if noted.read_text() == here:
            return ""
    refused = overlay.refusal(layers)
    if refused is None:
        noted.write_text(here)
        return ""
    from tasks.build.rootfs import _say

    _say(f"provider local: overlayfs is refused in {layers} ({refused}); each layer is a full copy (cp --reflink=auto)")
    return refused


def build_layer(
    spec: Spec,
    catalog: Catalog,
    customer: Customer,
    provider: Any,
    results: Results,
    plays: Plays,
    say: Callable[[str], None],
    checks_beside: Callable[[list[str]], PendingChecks],
) -> tuple[CloudImage, int, Path, str | None]:
    """The layer committed: its image, its build row, its directory and its dpkg status."""
    from tasks.providers.local import LocalProvider

    assert isinstance(provider, LocalProvider)
    key, fp, manifest, log = spec.key, spec.fp, spec.manifest, spec.log
    role = catalog.roles[key.role]
    distro = catalog.distros[key.distro]
    suite = local_suite(key.distro, str(distro.conf["family"]), distro.conf.get("local"))
    check_tools(key.distro, suite)
    name, source, playbook = spec.name, spec.source, spec.job.playbook
    refused = copies_instead(provider.layers)
    tmp = provider.layers / f".{name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build_id = results.start_build("local", key.region, spec.customer, key.distro, key.role, fp, log)
    say(f"{key.label}: building layer {name} from {source} (log {log})")
    lowers: list[Path] = []
    status: str | None = None
    verify = role.verify_play(catalog.root) if playbook else None
    checks = checks_beside([p for p in (playbook, verify) if p])
    try:
        base = debootstrap(suite, provider.cache, log, key.label) if role.parent is None else None
        if refused:
            if base is None and is_overlay(provider.tree(source)):
                raise KilnError(
                    f"{provider.tree(source)}: an overlay layer, and overlayfs is refused here ({refused});"
                    " remove the local layers (doit prune provider=local apply=1 keep=1) or build where overlayfs works"
                )
            copy_tree(base if base is not None else provider.tree(source), tmp)
            tree = tmp
        else:
            lowers = [base] if base is not None else provider.stack(source)
            for part in ("upper", "work", "root"):
                (tmp / part).mkdir(parents=True)
            write_lower(tmp, base_lower(provider.cache, base) if base is not None else Lower(parent=source))
            tree = tmp / "root"
            overlay.mount(lowers, tmp / "upper", tmp / "work", tree)
        if playbook:
            extra = {
                "ansible_python_interpreter": str(distro.conf["python"]),
                "kiln_role": key.role,
                **{k: str(v) for k, v in customer.conf.get("ansible_vars", {}).items()},
            }
            env = plays.env(playbook, log)
            try:
                run_play(tree, catalog.root / playbook, extra, env, log, key.label)
            except PlayFailed as err:
                checks.wait()  # a syntax finding is the clearer line
                if spec.job.debug:
                    kept = _keep_failed(plays, provider.layers, tmp, tree, spec, extra, err.task)
                    raise BuildFailed(f"{err.plain} (failed layer kept at {kept})", str(log)) from None
                raise
            if verify is not None:  # same tree, same connection, before the layer is committed
                checks.wait()  # done by now; a syntax finding in the test says more than its failure
                say(f"{key.label}: verifying with {verify}")
                run_verify(tree, catalog.root, verify, extra, env, log, key.label)
            missed = plays.missed_reads(key.label, key.role, playbook, log, manifest)
            if missed:
                results.set_missed(build_id, missed)
        checks.wait()  # before anything is committed
        dpkg = tree / "var/lib/dpkg/status"
        status = dpkg.read_text(errors="replace") if dpkg.is_file() else None
        if lowers:
            overlay.unmount(tree)
            overlay.squash(tmp / "upper", lowers)  # kiln's own stand-ins, put back, are no change
    except Interrupted as err:
        results.finish_build(build_id, "interrupted", message=str(err))
        _discard(tmp)
        raise
    except (BuildFailed, KilnError) as err:
        results.finish_build(build_id, VERIFY_FAILED if isinstance(err, VerifyFailed) else "failed", message=str(err))
        _discard(tmp)
        raise
    except BaseException:
        _discard(tmp)
        raise
    finally:
        checks.cancel()
    final = provider.tree(name)
    if final.exists():  # force=1: the new layer replaces the old one of the same fingerprint
        provider.deregister(key.region, name)
    tmp.rename(final)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    image = CloudImage(name, name, "local", created, {**spec.tags, "fingerprint": fp})
    provider.commit(image)
    return image, build_id, final, status


def _discard(path: Path) -> None:
    if path.exists():
        release(path)
        shutil.rmtree(path, ignore_errors=True)


def _keep_failed(
    plays: Plays, layers: Path, tmp: Path, tree: Path, spec: Spec, extra: dict[str, str], task: str
) -> Path:
    """debug=1: keep the failed layer and say the two commands that help."""
    kept = layers / f"failed-{spec.name}"
    playbook = spec.job.playbook or ""
    if tree != tmp:
        overlay.unmount(tree)
    _discard(kept)
    tmp.rename(kept)
    key = spec.key
    if tree != tmp:
        enter = f"doit shell {key.role} provider=local distro={key.distro} image={kept.name}"
        target, note = kept / "root", " while that shell is open"
    else:
        enter, target, note = f"chroot {shlex.quote(str(kept))} /bin/bash", kept, ""
    rerun = ansible_command(target, plays.root / playbook, extra, verbose=True, start_at=task)
    layout = plays.layout_env(playbook)
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(layout.items()))
    plays.say(f"the failed layer is kept; enter it with: {enter}")
    plays.say(f"re-run the failing play verbosely{note} with: {env} {shlex.join(rerun)}")
    return kept


def warn_old_layers(layers: Path, current: set[str], say: Callable[[str], None]) -> None:
    old = [p for p in layers.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in current]
    if not old:
        return
    disk = shutil.disk_usage(layers)
    if len(old) >= WARN_LAYERS or disk.free < WARN_FREE * disk.total:
        say(
            f"{len(old)} old layers kept, {human(disk.free)} free on their disk;"
            " doit prune provider=local lists them with their sizes, apply=1 removes them"
        )
