"""Two kiln runs at once on one machine: no lost rows, and the same image is built once."""

from __future__ import annotations

from pathlib import Path

from conftest import Kiln, slow_packer, start


def test_same_image_from_two_runs_is_built_once(kiln: Kiln, tmp_path: Path) -> None:
    env = slow_packer(tmp_path)
    kiln.doit("sandbox")
    first = start(kiln, env, "core", "provider=sandbox", "region=us-east-1")
    second = start(kiln, env, "core", "provider=sandbox", "region=us-east-1")
    results = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0, results[0][1]
    assert second.returncode == 0, results[1][1]
    roles = sorted(r["role"] for r in kiln.rows("SELECT role FROM builds"))
    assert roles == ["base-vmi", "core", "server-base"], "an image was built twice"
    errs = results[0][1] + results[1][1]
    assert "waiting for kiln pid" in errs
    assert "was built meanwhile by the run we waited for" in errs
    assert len(kiln.rows("SELECT * FROM images")) == 3


def test_different_roles_at_once_lose_no_rows(kiln: Kiln, tmp_path: Path) -> None:
    kiln.doit("server-base", "provider=sandbox", "region=us-east-1")
    env = slow_packer(tmp_path)
    procs = [start(kiln, env, role, "provider=sandbox", "region=us-east-1") for role in ("core", "pipeline")]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    rows = kiln.rows("SELECT role, state FROM images ORDER BY role")
    assert [(r["role"], r["state"]) for r in rows] == [
        ("base-vmi", "available"),
        ("core", "available"),
        ("pipeline", "available"),
        ("server-base", "available"),
    ]
    assert {r["status"] for r in kiln.rows("SELECT status FROM builds")} == {"ok"}
    export = kiln.state / "exports/sandbox/paxata/debian-12/us-east-1.vmi.properties"
    assert {line.split("=")[0] for line in export.read_text().splitlines() if "=" in line} == {
        "base-vmi",
        "server-base",
        "core",
        "pipeline",
    }
