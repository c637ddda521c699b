"""Build one provider=local layer: a copy of the parent's tree (or the debootstrap tree for the
root) with the role's playbook applied through the chroot connection, committed by writing its
record. A failed layer is removed, or with debug=1 kept with the commands to look into it."""

from __future__ import annotations

import os
import shlex
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

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
from tasks.errors import BuildFailed, Interrupted, KilnError
from tasks.providers.base import CloudImage

if TYPE_CHECKING:
    from tasks.cli.session import ImageKey, Run

# Old layers are pointed out after a build when there are many or their disk runs low, so they
# never fill it silently; a statvfs, not a walk of gigabytes, keeps the edit loop fast.
WARN_LAYERS = 5
WARN_FREE = 0.15


def build_layer(run: Run, key: ImageKey) -> None:
    from tasks.providers.local import LocalProvider

    provider = run.provider
    assert isinstance(provider, LocalProvider)
    catalog, o = run.catalog, run.options
    fp, manifest = run.fingerprint(key)
    role = catalog.roles[key.role]
    distro = catalog.distros[key.distro]
    suite = local_suite(key.distro, str(distro.conf["family"]), distro.conf.get("local"))
    check_tools(key.distro, suite)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")[:-3]
    name = f"{key.role}-{key.distro}-{fp[:12]}"
    source = run.source_image(key)
    playbook, _ = run.playbook(role)
    log = run.log_path(key, stamp)
    provider.layers.mkdir(parents=True, exist_ok=True)
    tmp = provider.layers / f".{name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build_id = run.results.start_build(o.provider, key.region, o.customer, key.distro, key.role, fp, log)
    run.say(f"{key.label}: building layer {name} from {source} (log {log})")
    try:
        if role.parent is None:
            copy_tree(debootstrap(suite, provider.cache, log, key.label), tmp)
        else:
            copy_tree(provider.tree(source), tmp)
        if playbook:
            extra = {
                "ansible_python_interpreter": str(distro.conf["python"]),
                "kiln_role": key.role,
                **{k: str(v) for k, v in run.customer.conf.get("ansible_vars", {}).items()},
            }
            try:
                run_play(tmp, catalog.root / playbook, extra, run.play_env(playbook, log), log, key.label)
            except PlayFailed as err:
                if o.debug and run.named(key.role):
                    kept = _keep_failed(run, provider.layers, tmp, name, playbook, extra, err.task)
                    raise BuildFailed(f"{err.plain} (failed layer kept at {kept})", str(log)) from None
                raise
            run.check_reads(key, build_id, playbook, log, manifest)
    except Interrupted as err:
        run.results.finish_build(build_id, "interrupted", message=str(err))
        _discard(tmp)
        raise
    except (BuildFailed, KilnError) as err:
        run.results.finish_build(build_id, "failed", message=str(err))
        _discard(tmp)
        raise
    except BaseException:
        _discard(tmp)
        raise
    final = provider.tree(name)
    if final.exists():  # force=1: the new layer replaces the old one of the same fingerprint
        provider.deregister(key.region, name)
    tmp.rename(final)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    image = CloudImage(name, name, "local", created, {**run.image_tags(key, name, source), "fingerprint": fp})
    provider.commit(image)
    run.record(key, image, fp, manifest, origin="built", build_id=build_id)
    run.counts["built"] += 1
    run.say(f"{key.label}: built layer {final}")
    _warn_old_layers(run, provider.layers)


def _discard(path: Path) -> None:
    if path.exists():
        release(path)
        shutil.rmtree(path, ignore_errors=True)


def _keep_failed(run: Run, layers: Path, tmp: Path, name: str, playbook: str, extra: dict[str, str], task: str) -> Path:
    """debug=1: keep the failed layer and say the two commands that help."""
    kept = layers / f"failed-{name}"
    _discard(kept)
    tmp.rename(kept)
    enter = f"chroot {shlex.quote(str(kept))} /bin/bash"
    rerun = ansible_command(kept, run.catalog.root / playbook, extra, verbose=True, start_at=task)
    layout = run.ansible.play(playbook).layout.env()
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(layout.items()))
    run.say(f"the failed layer is kept; enter it with: {enter}")
    run.say(f"re-run the failing play verbosely with: {env} {shlex.join(rerun)}")
    return kept


def _warn_old_layers(run: Run, layers: Path) -> None:
    from tasks.fleet.inventory import mainline

    current = {i for d in run.options.distros for i in mainline(run, d, "local").values()}
    old = [p for p in layers.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in current]
    if not old:
        return
    disk = shutil.disk_usage(layers)
    if len(old) >= WARN_LAYERS or disk.free < WARN_FREE * disk.total:
        run.say(
            f"{len(old)} old layers kept, {human(disk.free)} free on their disk;"
            " doit prune provider=local lists them with their sizes, apply=1 removes them"
        )
