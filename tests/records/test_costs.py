"""The cost line: after a run, the instance time of each build (Packer's wall time on its
instance type, from the build rows); with `doit images`, what each image keeps in GB."""

from __future__ import annotations

import re

from conftest import Kiln

ARGS = ("provider=sandbox", "region=us-east-1,eu-west-1")
CHAIN = ("base-vmi", "server-base", "core", "pipeline")


def test_instance_time_after_a_run_and_sizes_in_images(kiln: Kiln) -> None:
    err = kiln.doit("core", "pipeline", *ARGS).stderr
    lines = [line for line in err.splitlines() if line.startswith("kiln: instance time:")]
    assert len(lines) == 5, err
    for role in CHAIN:
        assert any(
            re.fullmatch(rf"kiln: instance time: {role}/debian-12/us-east-1: [0-9.]+s on t3\.small", x) for x in lines
        )
    assert re.fullmatch(
        r"kiln: instance time: 4 builds, [0-9.]+ instance-hours \([0-9.]+s on t3\.small\); copies use none", lines[-1]
    )
    rows = kiln.rows("SELECT seconds, instance_type, capacity FROM builds")
    assert len(rows) == 4 and all(r["seconds"] > 0 and r["instance_type"] == "t3.small" for r in rows)

    images = kiln.doit("images", *ARGS)
    table = images.stdout.splitlines()
    header = table[0]
    size_at, build_at = header.index("size"), header.index("build")
    for line in table[1:]:
        assert line[size_at:build_at].strip() == "15 GB/1 snap", line
        built = " copied " not in line
        assert (line[build_at:].strip() != "-") == built, line
    summary = [line for line in images.stderr.splitlines() if line.startswith("kiln: images:")]
    assert len(summary) == 1
    assert summary[0].startswith("kiln: images: 8 images keep 120 GB of volumes in 8 snapshots; the builds that made")
    # A run that builds nothing says no instance time.
    again = kiln.doit("core", "pipeline", *ARGS).stderr
    assert "instance time" not in again
