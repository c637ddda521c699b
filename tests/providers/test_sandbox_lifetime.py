"""The sandbox server's lifetime: it stops itself when its state folder or pid file goes (or
names another process) and when idle; `doit sandbox-stop` finds the servers whose pid file was
lost. Real servers, real signals; nothing is timed, each wait polls with a generous limit."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from conftest import Kiln, clean_env, copy_catalog

QUICK = {"KILN_SANDBOX_CHECK_SECONDS": "0.5"}


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while running(pid):
        assert time.monotonic() < deadline, f"sandbox server {pid} is still running"
        time.sleep(0.2)


def server_pid(kiln: Kiln, env: dict[str, str] | None = None) -> int:
    kiln.doit("sandbox", env=env)
    pid = int((kiln.state / "sandbox" / "pid").read_text())
    assert running(pid)
    return pid


def test_removing_the_state_folder_stops_the_server(kiln: Kiln) -> None:
    pid = server_pid(kiln, QUICK)
    shutil.rmtree(kiln.state)  # rm -rf .kiln, as git clean -fdx does
    wait_gone(pid)


def test_a_pid_file_naming_another_process_stops_the_server(kiln: Kiln) -> None:
    pid = server_pid(kiln, QUICK)
    (kiln.state / "sandbox" / "pid").write_text("1")
    wait_gone(pid)


def test_an_idle_server_stops_itself(kiln: Kiln) -> None:
    pid = server_pid(kiln, {**QUICK, "KILN_SANDBOX_IDLE_SECONDS": "3"})
    wait_gone(pid)
    assert "no request for" in (kiln.state / "sandbox" / "server.log").read_text()


def test_a_server_that_is_used_keeps_running(kiln: Kiln) -> None:
    pid = server_pid(kiln, QUICK)
    ec2 = kiln.ec2()
    for _ in range(6):
        ec2.describe_regions()
        time.sleep(0.5)
    assert running(pid), "a server with its folder, pid file and requests must keep running"


def test_sandbox_stop_finds_a_server_whose_pid_file_was_lost(kiln: Kiln, tmp_path: Path) -> None:
    home = tmp_path / "home-other"
    home.mkdir()
    other = Kiln(copy_catalog(tmp_path / "other"), clean_env(home))
    theirs = server_pid(other)
    try:
        pid = server_pid(kiln)  # checks every 30s and gives a missing pid file 120s: still up below
        (kiln.state / "sandbox" / "pid").unlink()
        proc = kiln.doit("sandbox-stop")
        assert f"stopped sandbox server pid {pid} of {kiln.state / 'sandbox'} (its pid file was lost)" in proc.stderr
        assert "kiln: sandbox stopped" in proc.stderr
        wait_gone(pid, 30)
        assert running(theirs), "another checkout's sandbox must not be touched"
        again = kiln.doit("sandbox-stop")
        assert "kiln: sandbox was not running" in again.stderr
    finally:
        other.doit("sandbox-stop", code=None)
    wait_gone(theirs, 30)


def test_a_bad_idle_setting_is_one_line(kiln: Kiln) -> None:
    proc = kiln.doit("sandbox", env={"KILN_SANDBOX_IDLE_SECONDS": "soon"}, code=3)
    assert "variable KILN_SANDBOX_IDLE_SECONDS: 'soon' is not a number of seconds" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
