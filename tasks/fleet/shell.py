"""`doit shell <role> provider=local [image=<layer>]`: a root shell inside the role's current
layer (or the layer named, a failed one kept by debug=1 included), with /proc and /dev as a
play has them, unmounted when the shell ends.

A committed layer is seen through a throw-away upper directory: what is changed in the shell is
gone afterwards, so the image still is what its fingerprint says. A failed layer is mounted
on its own upper directory, so a fix tried there stays with it. Ctrl-C belongs to the shell;
kiln waits for it to end. Commands can come on stdin (`echo 'dpkg -l' | doit shell core ...`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.errors import BuildFailed, KilnError
from tasks.fleet.context import Context
from tasks.fleet.packages import place
from tasks.fleet.promote import check_role
from tasks.records.current import current_row


@contextlib.contextmanager
def _shell_signals() -> Iterator[None]:
    """The terminal's Ctrl-C and Ctrl-\\ go to the shell alone while it runs."""
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _sweep(views: Path, say: Callable[[str], None]) -> None:
    """Views left by shells whose kiln was killed (`<layer>.<pid>`, that pid gone): unmounted
    and removed before another is made."""
    from tasks.build.dead_builds import pid_gone
    from tasks.build.rootfs import release

    for view in sorted(views.iterdir()) if views.is_dir() else []:
        if pid_gone(view.name.rsplit(".", 1)[-1]):
            release(view)
            shutil.rmtree(view, ignore_errors=True)
            say(f"removed {view}, the view of a shell whose kiln was killed")


def shell_command(run: Context, pos: list[str], image: str) -> str:
    from tasks.build import overlay
    from tasks.build.rootfs import mounted, need_root

    o = run.options
    if o.provider != "local":
        raise KilnError(f"variable provider: doit shell enters a local layer: provider=local, not {o.provider}")
    role = check_role(run, "shell", pos)
    need_root()
    distro, region = place(run)
    provider = run.provider
    if not image:
        row = current_row(run.results, o.provider, o.customer, role, distro, region)
        if row is None:
            raise KilnError(f"{role} ({distro}): no current layer; build it first: doit {role} provider=local distro={distro}")
        image = str(row["image_id"])
    layer: Path = provider.tree(image)
    if "/" in image or not layer.is_dir():
        here = sorted(provider.layers.iterdir()) if provider.layers.is_dir() else []
        known = [p.name for p in here if p.is_dir() and p.name.startswith((role, f"failed-{role}"))]
        raise KilnError(f"variable image: no layer {image!r} in {provider.layers}; layers of {role}: {', '.join(known) or '(none)'}")
    from tasks.providers.layer_stack import is_overlay

    lowers = provider.stack(image)
    committed = (provider.layers / f"{image}.json").exists()
    _sweep(run.state / "work" / "shell", run.say)
    scratch = run.state / "work" / "shell" / f"{image}.{os.getpid()}"
    view: contextlib.AbstractContextManager[Path]
    if committed:  # a full copy is seen through an overlay too: no change reaches an image
        view, kept = overlay.scratch_view(lowers, scratch), "discarded"
    elif is_overlay(layer):
        view = overlay.mounted_at(lowers[1:], layer / "upper", layer / "work", layer / "root")
        kept = "kept in the failed layer"
    else:
        view, kept = contextlib.nullcontext(layer), "kept in the failed layer"
    run.say(f"{role} ({distro}): a root shell in {image}; what changes in it is {kept} when it ends")
    try:
        with view as root, mounted(root):
            shell = "/bin/bash" if (root / "bin/bash").exists() else "/bin/sh"
            env = {"TERM": os.environ.get("TERM", "dumb"), "HOME": "/root", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            env["PS1"] = f"({image}) \\w# "
            # Started before kiln ignores the signals: an ignored signal would be the shell's too.
            proc = subprocess.Popen(["chroot", str(root), shell], env=env)
            with _shell_signals():
                code = proc.wait()
    except overlay.Refused as err:
        raise KilnError(
            f"{err}; without overlayfs a shell would change the layer itself (chroot {layer} /bin/bash does that)"
        ) from None
    if code != 0:  # as the shell's own exit status: a script on stdin that failed fails the command
        how = f"was ended by {signal.Signals(-code).name}" if code < 0 else f"ended with exit code {code}"
        raise BuildFailed(f"{role} ({distro}): the shell in {image} {how}; nothing stays mounted")
    return f"{image}: the shell ended; nothing stays mounted\n"
