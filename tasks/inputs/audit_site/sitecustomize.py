"""Loaded into ansible-playbook by kiln (PYTHONPATH): notes every file the Ansible controller
opens for reading under the folders kiln watches, so kiln can compare them with the image's
inputs. Writes to one descriptor opened before the hook exists (the hook must not open files);
forked workers inherit both."""

import contextlib
import os
import sys


def _install() -> None:
    out = os.environ.get("KILN_AUDIT_FILE")
    if not out:
        return
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    roots = tuple(r.rstrip(os.sep) + os.sep for r in os.environ.get("KILN_AUDIT_ROOTS", "").split(os.pathsep) if r)
    seen = set()
    writing = os.O_WRONLY | os.O_RDWR

    def hook(event, args):  # type: ignore[no-untyped-def]
        if event != "open" or not roots:
            return
        path, mode, flags = args
        if not isinstance(path, (str, bytes)):
            return
        if isinstance(flags, int) and flags & writing:
            return
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return
        text = os.fsdecode(path)
        if not text.startswith(os.sep):
            try:
                text = os.path.join(os.getcwd(), text)
            except OSError:
                return
        text = os.path.normpath(text)
        if text in seen or not text.startswith(roots):
            return
        seen.add(text)
        with contextlib.suppress(OSError):
            os.write(fd, (text + "\n").encode("utf-8", "surrogateescape"))

    sys.addaudithook(hook)


_install()
