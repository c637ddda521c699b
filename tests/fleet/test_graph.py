"""`doit graph`: the lineage as Graphviz text, and drawn by Debian's Graphviz into the state
folder: roles per distro and region with status, verification, origin and channels."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import Kiln, failure_line

SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_graph_draws_lineage_status_and_channels(kiln: Kiln) -> None:
    verify = kiln.root / "provision/ansible/verify/core.yml"
    verify.parent.mkdir(parents=True)
    verify.write_text("---\n- name: Verify\n  hosts: all\n  tasks: []\n")
    kiln.doit("core", *SANDBOX)
    kiln.doit("promote", "server-base", "channel=prod", *SANDBOX)
    dot = kiln.doit("graph", *SANDBOX).stdout
    assert '"server-base@debian-12@us-east-1" -> "core@debian-12@us-east-1";' in dot
    assert '"base-vmi@debian-12@us-east-1" -> "server-base@debian-12@us-east-1";' in dot
    assert "channels: prod" in dot and "verify: unverified" in dot and "current (built)" in dot
    assert "pipeline" in dot and "missing" in dot
    # Graphviz itself accepts the text.
    subprocess.run(["dot", "-Tcanon"], input=dot, capture_output=True, text=True, check=True)
    svg = Path(kiln.doit("graph", *SANDBOX, "format=svg").stdout.strip())
    assert svg.is_relative_to(kiln.state) and "<svg" in svg.read_text()
    png = Path(kiln.doit("graph", *SANDBOX, "format=png").stdout.strip())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    failure_line(kiln.doit("graph", *SANDBOX, "format=jpg", code=3).stderr, "variable format", "dot, svg, png")
