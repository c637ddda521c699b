"""One `packer build`: own process group, working directory in the state folder, lines streamed
live with the image's name and kept in a log, the artifact read from the manifest post-processor."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from tasks.build import interrupts, trail
from tasks.build.child_process import run_streamed
from tasks.errors import BuildFailed, Interrupted, KilnError
from tasks.packer_bin import packer_path

_print_lock = threading.Lock()
KEPT_PACKER_SETTINGS = ("PACKER_PLUGIN_PATH", "PACKER_CONFIG_DIR")


def _unescape(text: str) -> str:
    return text.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")


def _show(prefix: str, text: str) -> None:
    with _print_lock:
        for line in text.splitlines() or [""]:
            sys.stdout.write(f"{prefix} {line}\n")
        sys.stdout.flush()


def _summary(errors: list[str]) -> str:
    """The most telling line of Packer's errors: the last error's first line, without the
    build-name prefix (the image's name is said already)."""
    for error in reversed(errors):
        lines = [line.strip() for line in error.splitlines() if line.strip()]
        if lines:
            return re.sub(r"^(-->\s*)?[\w.-]+\.[\w.-]+:\s*", "", lines[0])
    return ""


def parse_artifact(manifest: Path) -> str | None:
    """The image id of this run's artifact, from the manifest post-processor's file."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    run = data.get("last_run_uuid")
    for build in reversed(data.get("builds", [])):
        if build.get("packer_run_uuid") == run and build.get("artifact_id"):
            return str(build["artifact_id"]).split(",")[0].split(":")[-1]
    return None


def run_packer(
    image: str, template: Path, var_file: Path, workdir: Path, log: Path, env: dict[str, str], debug: bool = False
) -> str:
    """Build; return the image id. Raises BuildFailed, Interrupted or KilnError."""
    if interrupts.interrupted.is_set():
        raise Interrupted("interrupted before the build started")
    manifest = workdir / "manifest.json"
    manifest.unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    # Packer's own settings from the user's environment are kept where its plugins live
    # (PACKER_PLUGIN_PATH, PACKER_CONFIG_DIR): `packer init` installed them there.
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PACKER_")) or k in KEPT_PACKER_SETTINGS
    }
    full_env.update(env)
    # Packer's ansible provisioner runs ansible-playbook from PATH: the one installed beside kiln.
    venv_bin = str(Path(sys.executable).parent)
    full_env["PATH"] = os.pathsep.join([venv_bin, full_env.get("PATH", "")])
    full_env.update(
        {
            "CHECKPOINT_DISABLE": "1",  # Packer would otherwise ask the internet for new versions
            "PACKER_CACHE_DIR": str(workdir / "cache"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "PACKER_NO_COLOR": "1",
        }
    )
    cmd = [packer_path(), "build", f"-var-file={var_file}", str(template)]
    if debug:
        cmd[2:2] = ["-debug"]
        return _run_debug(image, cmd, workdir, full_env, manifest)
    cmd[2:2] = ["-machine-readable", "-color=false"]
    prefix = f"[{image}]"
    errors: list[str] = []
    plain: list[str] = []
    with log.open("w") as out:
        out.write(f"# {' '.join(cmd)}\n# cwd {workdir}\n")

        def on_line(raw: str) -> None:
            fields = raw.rstrip("\n").split(",", 4)
            if len(fields) >= 4 and fields[2] == "ui":
                kind, text = fields[3], _unescape(fields[4] if len(fields) > 4 else "")
                trail.note(workdir, text)  # what Packer made, for the run after a kill (trail.py)
                if kind == "error":
                    errors.append(text.strip())
                _show(prefix, text.rstrip())
            elif len(fields) < 3 or not fields[0].isdigit():
                _show(prefix, raw.rstrip())  # plain output (a crash, a panic)
                if raw.strip():
                    plain.append(raw.strip())

        code = run_streamed(cmd, out, image, log, on_line, cwd=workdir, env=full_env)
    if interrupts.interrupted.is_set():
        raise Interrupted(f"interrupted; Packer cleaned up; see {log}")
    if code != 0:
        crash = next((line for line in plain if line.startswith("panic")), plain[-1] if plain else "")
        telling = _summary(errors) or crash or f"exit code {code}"
        raise BuildFailed(f"packer build failed: {telling}", str(log))
    artifact = parse_artifact(manifest)
    if artifact is None:
        raise BuildFailed("packer build finished but produced no image (zero artifacts)", str(log))
    return artifact


def _run_debug(image: str, cmd: list[str], workdir: Path, env: dict[str, str], manifest: Path) -> str:
    """Packer's step debugger needs the terminal: run it plainly, in the foreground."""
    if not sys.stdin.isatty():
        raise KilnError("variable debug: debug=1 needs a terminal on stdin (Packer waits for Enter at each step)")
    try:
        code = subprocess.call(cmd, cwd=workdir, env=env)
    finally:
        # Packer -debug writes the temporary private key into its working directory.
        for key in workdir.glob("*.pem"):
            key.unlink(missing_ok=True)
    if code != 0:
        raise BuildFailed(f"packer build -debug failed with code {code}")
    artifact = parse_artifact(manifest)
    if artifact is None:
        raise BuildFailed("packer build finished but produced no image (zero artifacts)")
    return artifact
