"""Ctrl-C and SIGTERM during a build: Packer's cleanup runs, nothing is left in the cloud, the
database has no image row (a build row marked interrupted, with its log), exit code 130.

A build that waits for SSH to an instance that never answers (provider=aws through an endpoint
override to the sandbox: its instances have no machine behind them) stays in progress until
interrupted, so the signal lands mid-build without any race on timing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Kiln, leftovers


def start_build(kiln: Kiln) -> tuple[subprocess.Popen[str], dict[str, str]]:
    endpoint = kiln.doit("sandbox").stdout.strip()
    env = {**kiln.env, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    # eu-west-1 has no package file: the default VPC, as on a fresh account.
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", "server-base", "region=eu-west-1"],
        cwd=kiln.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # until Packer has launched the instance and waits for SSH
        seen.append(line)
        if "Waiting for SSH" in line:
            return proc, env
    proc.wait()
    raise AssertionError("the build never reached SSH:\n" + "".join(seen) + proc.stderr.read())  # type: ignore[union-attr]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_build_cleans_up_and_exits_130(kiln: Kiln, sig: signal.Signals) -> None:
    proc, _ = start_build(kiln)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "waiting for Packer to clean up server-base/debian-12/eu-west-1" in err
    assert leftovers(kiln) == ([], [], [])
    rows = kiln.rows("SELECT role, status, log_path FROM builds ORDER BY id")
    assert [(r["role"], r["status"]) for r in rows] == [("base-vmi", "ok"), ("server-base", "interrupted")]
    assert rows[1]["log_path"] and "Cleanly cancelled" in Path(rows[1]["log_path"]).read_text()
    assert [r["role"] for r in kiln.rows("SELECT role FROM images")] == ["base-vmi"]


def test_a_second_interrupt_stops_waiting_and_names_what_may_be_left(kiln: Kiln, tmp_path: Path) -> None:
    # A stand-in for a Packer whose cleanup hangs (it ignores the forwarded signal): the one
    # external binary faked here, so that the second interrupt lands while kiln still waits.
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir()
    pidfile = tmp_path / "packer.pid"
    fake.write_text(
        "#!/bin/bash\n"
        'case "$1" in version) echo "Packer v1.6.6"; exit 0;; fmt|validate) exec /usr/bin/packer "$@";; esac\n'
        f"echo $$ > {pidfile}\n"
        "trap 'echo \"1,,ui,say,cleaning up very slowly\"' INT TERM\n"
        'echo "1,,ui,say,==> fake: Waiting for SSH to become available..."\n'
        "while true; do sleep 0.1; done\n"
    )
    fake.chmod(0o755)
    env = {**kiln.env, "PATH": f"{fake.parent}:{kiln.env['PATH']}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", "base-vmi", "provider=sandbox", "region=us-east-1"],
        cwd=kiln.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        for line in proc.stdout:
            if "Waiting for SSH" in line:
                break
        proc.send_signal(signal.SIGINT)
        for line in proc.stderr:
            if "interrupt again to stop waiting" in line:
                break
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        line = next(line for line in err.splitlines() if "stopped waiting" in line)
        assert "base-vmi/debian-12/us-east-1" in line and ".log" in line and "left" in line
        assert not kiln.rows("SELECT * FROM images")
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):  # gone already: nothing to clean
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
