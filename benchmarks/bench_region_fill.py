"""The chain over 3 regions under `-n 3 -P thread`: one build per fingerprint plus copies (region
fill) against a build in every region (copy=0), in the same warm sandbox, sides alternated.

Reported as ratios: wall time in the sandbox (where a build takes about a second and a copy
a fraction of it), Packer builds, and instance time from the build rows, which is what a real
account pays for (a build is 10-30 minutes of an instance; a copy uses none). Goal: a third of
the builds and of the instance time (exactly 4 of 12), and no slower in wall time (<= 1.0x).
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from common import doit, scratch_catalog

ARGS = ("-n", "3", "-P", "thread", "core", "pipeline", "provider=sandbox", "region=us-east-1,us-west-2,eu-west-1")


def builds(root: Path) -> tuple[int, float]:
    con = sqlite3.connect(root / ".kiln/results.sqlite")
    try:
        n, seconds = con.execute("SELECT count(*), coalesce(sum(seconds), 0) FROM builds").fetchone()
    finally:
        con.close()
    return int(n), float(seconds)


def main() -> int:
    root = scratch_catalog()
    try:
        doit(root, *ARGS)  # warms the sandbox and fills the three regions
        sides: dict[str, list[tuple[float, int, float]]] = {"fill": [], "copy=0": []}
        for _ in range(3):
            for side, extra in (("fill", ()), ("copy=0", ("copy=0",))):
                before = builds(root)
                start = time.perf_counter()
                doit(root, *ARGS, "force=chain", *extra)
                took = time.perf_counter() - start
                after = builds(root)
                sides[side].append((took, after[0] - before[0], after[1] - before[1]))
        fill = [statistics.median(x[i] for x in sides["fill"]) for i in range(3)]
        every = [statistics.median(x[i] for x in sides["copy=0"]) for i in range(3)]
        wall, count, instance = (fill[i] / every[i] for i in range(3))
        ok = fill[1] == 4 and every[1] == 12 and wall <= 1.0
        print(
            f"3 regions, -n 3 -P thread, force=chain: region fill {fill[0]:.1f}s with {fill[1]:.0f} builds"
            f" ({fill[2]:.1f} instance-s), copy=0 {every[0]:.1f}s with {every[1]:.0f} builds ({every[2]:.1f} instance-s);"
            f" ratios: wall {wall:.2f}x, builds {count:.2f}x, instance time {instance:.2f}x"
            f" (goal 4 of 12 builds and wall <= 1.0x: {'meets' if ok else 'MISSES'})"
        )
        return 0 if ok else 1
    finally:
        doit(root, "sandbox-stop")


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.exit(main())
