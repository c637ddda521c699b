"""Shared by the benchmarks: a scratch copy of the catalog and a repeatable timer.

Every figure is a ratio against a baseline measured in the same run on the same machine, so
a noisy, shared machine moves both sides alike. Medians of several rounds, sides alternated.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CATALOG = ("dodo.py", "pyproject.toml", "packer", "provision", "distros", "customers")


def scratch_catalog() -> Path:
    root = Path(tempfile.mkdtemp(prefix="kiln-bench-")) / "repo"
    root.mkdir()
    for name in CATALOG:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.vmi.properties"))
        else:
            shutil.copy2(src, root / name)
    return root


def env() -> dict[str, str]:
    # As on a user's machine, Python keeps compiled modules: some sandboxes switch that off,
    # which would charge kiln's every run for recompiling its sources.
    out = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PACKER_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    out.update({"AWS_EC2_METADATA_DISABLED": "true", "CHECKPOINT_DISABLE": "1", "PYTHONPATH": str(REPO)})
    return out


def doit(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doit", *args], cwd=root, env=env(), capture_output=True, text=True, check=True
    )


def median_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(
    name: str,
    ours: Callable[[], object],
    baseline: Callable[[], object],
    goal: float,
    rounds: int = 7,
    before_baseline: Callable[[], object] | None = None,
) -> float:
    """Alternate the two sides round by round; print and return ours/baseline. before_baseline
    runs untimed before each baseline round (e.g. a fresh copy of what it changes)."""
    ours_t: list[float] = []
    base_t: list[float] = []
    for _ in range(rounds):
        ours_t.append(median_time(ours, 1))
        if before_baseline is not None:
            before_baseline()
        base_t.append(median_time(baseline, 1))
    a, b = statistics.median(ours_t), statistics.median(base_t)
    ratio = a / b
    verdict = "meets" if ratio <= goal else "MISSES"
    print(
        f"{name}: kiln {a * 1000:.0f} ms, baseline {b * 1000:.0f} ms, ratio {ratio:.2f}x (goal <= {goal}x: {verdict})"
    )
    return ratio
