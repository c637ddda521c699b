"""Nothing of the image runs on the build host. A test role starts a listening daemon (a tiny
python http.server behind an init script that uses start-stop-daemon) through `service`, its
init script and a handler, tries to set the clock, and finally starts a listener behind kiln's
back. On provider=local and on the provisioned sandbox (both chroots on this machine): no host
port is bound while the play runs (watched from outside, and asserted by the play itself), the
clock cannot be set, the rogue listener is killed and named in one line, and the built tree has
no stand-in left. Real debootstrap trees, real Ansible (and real Packer for the sandbox)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from conftest import Kiln, layer_view, mounts_under, rooted_in, seed_rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot trees need root")

INIT = """#!/bin/sh
# kilntestd: a daemon the way Debian packages start them
PIDFILE=/run/kilntestd.pid
case "$1" in
  start) start-stop-daemon --start --background --make-pidfile --pidfile $PIDFILE \\
           --exec /usr/bin/python3 -- -m http.server {port} --bind 127.0.0.1 ;;
  stop) start-stop-daemon --stop --oknodo --pidfile $PIDFILE ;;
  restart) "$0" stop; "$0" start ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  *) echo "usage: $0 start|stop|restart|status"; exit 2 ;;
esac
"""

TASKS = """---
- name: Install the daemon's init script
  ansible.builtin.copy:
    src: kilntestd
    dest: /etc/init.d/kilntestd
    mode: "0755"
  notify: Restart kilntestd

- name: Start it through service
  ansible.builtin.service:
    name: kilntestd
    state: started

- name: Start it through its init script
  ansible.builtin.command: /etc/init.d/kilntestd start
  changed_when: true
  register: started
  notify: Restart kilntestd

- name: Show what the init script said
  ansible.builtin.debug:
    var: started.stderr

- name: Run the handlers now
  ansible.builtin.meta: flush_handlers

- name: Give a daemon time to bind
  ansible.builtin.wait_for:
    timeout: 2

- name: Nothing listens on the daemon's port
  ansible.builtin.wait_for:
    host: 127.0.0.1
    port: {port}
    state: stopped
    timeout: 1

- name: Setting the clock is refused
  ansible.builtin.command: >-
    python3 -c "import time, sys;
    now = time.clock_gettime(time.CLOCK_REALTIME);
    exec('try:\\n time.clock_settime(time.CLOCK_REALTIME, now); sys.exit(\\'the clock could be set\\')\\nexcept PermissionError: pass')"
  changed_when: false

- name: Start a listener behind kiln's back
  ansible.builtin.shell: setsid python3 -m http.server {rogue} --bind 127.0.0.1 </dev/null >/dev/null 2>&1 &
  changed_when: true

- name: It listens
  ansible.builtin.wait_for:
    host: 127.0.0.1
    port: {rogue}
    timeout: 20
"""

HANDLERS = """---
- name: Restart kilntestd
  ansible.builtin.service:
    name: kilntestd
    state: restarted
"""

PLAY = """---
- name: A daemon that must stay inert
  hosts: all
  become: true
  roles:
    - kiln_testd
"""

STAND_IN_MARK = b"kiln: daemons are inert"
TOOLS = ("sbin/start-stop-daemon", "usr/sbin/service", "bin/systemctl", "sbin/initctl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_role(kiln: Kiln, port: int, rogue: int) -> str:
    role = kiln.root / "provision/ansible/roles/kiln_testd"
    for sub, name, text in (
        ("files", "kilntestd", INIT.format(port=port)),
        ("tasks", "main.yml", TASKS.format(port=port, rogue=rogue)),
        ("handlers", "main.yml", HANDLERS),
    ):
        (role / sub).mkdir(parents=True, exist_ok=True)
        (role / sub / name).write_text(text)
    (kiln.root / "provision/ansible/inert.yml").write_text(PLAY)
    return "playbook=provision/ansible/inert.yml"


class PortWatch:
    """Tries the daemon's port from outside every 0.1 s while kiln runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bound = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    self.bound = True

    def __enter__(self) -> PortWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def assert_no_stand_in(tree: Path) -> None:
    for rel in TOOLS:
        path = tree / rel
        if path.exists():
            assert STAND_IN_MARK not in path.read_bytes(), f"a stand-in was left at /{rel}"
        assert not Path(f"{path}.kiln-real").exists(), f"/{rel} is still diverted"
    assert (tree / "sbin/start-stop-daemon").read_bytes()[:4] == b"\x7fELF", "the real start-stop-daemon is back"
    assert (tree / "usr/sbin/service").read_bytes().startswith(b"#!/bin/sh") and STAND_IN_MARK not in (
        tree / "usr/sbin/service"
    ).read_bytes()
    assert "kiln-real" not in (tree / "var/lib/dpkg/diversions").read_text()
    assert not (tree / "var/lib/kiln/inert.json").exists()
    assert not (tree / "usr/sbin/policy-rc.d").exists()


def assert_rogue_named(stderr: str, rogue: int) -> None:
    named = [ln for ln in stderr.splitlines() if "listening on host port" in ln]
    assert len(named) == 1, stderr
    assert named[0].startswith("kiln: ") and f"127.0.0.1:{rogue} (tcp)" in named[0] and "killed it" in named[0]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", rogue)) != 0, "the rogue listener still runs"


def test_local_play_starts_no_daemon_on_the_host(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    port, rogue = free_port(), free_port()
    override = write_role(kiln, port, rogue)
    with PortWatch(port) as watch:
        proc = kiln.doit("server-base", "provider=local", "distro=debian-12", override, timeout=900)
    assert not watch.bound, "the image's daemon listened on the host during the play"
    log = Path(kiln.rows("SELECT log_path FROM builds WHERE role='server-base'")[0][0]).read_text()
    assert "ignored: no daemon starts while the image is built" in log, "the stand-ins were not what ran"
    assert_rogue_named(proc.stderr, rogue)
    layers = kiln.state / "local/layers"
    layer = next(p for p in layers.iterdir() if p.is_dir() and p.name.startswith("server-base-"))
    with layer_view(layer) as tree:
        assert (tree / "etc/init.d/kilntestd").exists(), "the play's files are in the image"
        assert_no_stand_in(tree)
    assert rooted_in(kiln.state) == [] and not mounts_under(kiln.state)


def test_provisioned_sandbox_starts_no_daemon_but_kiln_sshd(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    port, rogue = free_port(), free_port()
    override = write_role(kiln, port, rogue)
    with PortWatch(port) as watch:
        proc = kiln.doit("server-base", "provider=sandbox", "region=us-east-1", "provision=1", override, timeout=900)
    assert not watch.bound, "the image's daemon listened on the host during the play"
    assert "answers SSH on 127.0.0.1:" in proc.stderr, "kiln's own sshd must keep working"
    assert_rogue_named(proc.stderr, rogue)
    tree = kiln.state / "sandbox/targets/server-base-debian-12"
    assert (tree / "etc/init.d/kilntestd").exists()
    assert_no_stand_in(tree)
    assert rooted_in(kiln.state) == [] and not mounts_under(kiln.state)
    assert kiln.ec2().describe_key_pairs()["KeyPairs"] == []
