"""Package inventories and diffs on provider=local, with real debootstrap and Ansible: `doit
packages core` is a CycloneDX 1.5 document of the layer's packages, and a package added to
core.yml shows in `doit diff core channel=prod` after a rebuild."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Kiln, failure_line, layer_view, seed_rootfs

LOCAL = ("provider=local", "distro=debian-12")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="provider=local needs root")

ADD_TREE = """
    - name: A small package more
      ansible.builtin.apt:
        name: tree
        update_cache: true
"""


def dpkg_listed(layer: Path) -> dict[str, str]:
    """What dpkg itself says is installed in the layer (not kiln's reading of the status file)."""
    out = subprocess.run(
        ["dpkg-query", f"--admindir={layer}/var/lib/dpkg", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {p[1]: p[2] for p in (line.split("\t") for line in out.splitlines()) if p[0].startswith("ii")}


def test_packages_is_cyclonedx_and_diff_names_an_added_package(kiln: Kiln, rootfs_cache: Path) -> None:
    seed_rootfs(kiln, rootfs_cache)
    kiln.doit("core", *LOCAL, timeout=900)
    core = kiln.current("core", "local")
    doc = json.loads(kiln.doit("packages", "core", *LOCAL).stdout)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5" and doc["version"] == 1
    assert doc["serialNumber"].startswith("urn:uuid:") and doc["metadata"]["component"]["version"] == core
    assert {c["type"] for c in doc["components"]} == {"library"}
    listed = {c["name"]: c["version"] for c in doc["components"]}
    with layer_view(kiln.state / "local/layers" / core) as tree:
        assert listed == dpkg_listed(tree)
    bash = next(c for c in doc["components"] if c["name"] == "bash")
    assert bash["purl"].startswith(f"pkg:deb/debian/bash@{quote(bash['version'], safe='')}?arch=")
    assert any("%3A" in c["purl"] for c in doc["components"] if ":" in c["version"]), "epochs are percent-encoded"
    assert (kiln.state / "packages" / f"{core}.cdx.json").is_file()
    assert kiln.rows("SELECT count FROM packages WHERE image_id=?", (core,))[0][0] == len(listed)

    assert "prod -> " in kiln.doit("promote", "core", "channel=prod", *LOCAL).stdout
    same = json.loads(kiln.doit("diff", "core", "channel=prod", *LOCAL, "format=json").stdout)
    assert same["packages"] == {"added": [], "removed": [], "upgraded": []} and same["inputs"] == []

    kiln.edit("provision/ansible/core.yml", "  tasks:" + ADD_TREE)
    kiln.doit("core", *LOCAL, timeout=900)
    new = kiln.current("core", "local")
    assert new != core
    text = kiln.doit("diff", "core", "channel=prod", *LOCAL).stdout
    assert f"prod {core} -> current {new}" in text and "  + tree " in text, text
    assert "changed provision/ansible/core.yml" in text
    doc2 = json.loads(kiln.doit("diff", "core", "channel=prod", *LOCAL, "format=json").stdout)
    assert [a["name"] for a in doc2["packages"]["added"]] == ["tree"]
    assert doc2["packages"]["removed"] == []
    by_image = json.loads(kiln.doit("diff", "core", f"image={core}", f"image2={new}", *LOCAL, "format=json").stdout)
    assert by_image["packages"] == doc2["packages"]

    err = kiln.doit("diff", "core", "channel=nosuch", *LOCAL, code=3).stderr
    assert "channels: prod" in failure_line(err, "variable channel", "no channel 'nosuch'")
    base = kiln.current("server-base", "local")
    err = kiln.doit("diff", "core", f"image={base}", f"image2={new}", *LOCAL, code=3).stderr
    failure_line(err, f"{base} is an image of role server-base, not core")
    failure_line(kiln.doit("diff", "core", f"image={core}", *LOCAL, code=3).stderr, "variable image2")
    failure_line(kiln.doit("packages", "nosuch", *LOCAL, code=3).stderr, "'nosuch' is not a role")
