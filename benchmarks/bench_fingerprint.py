"""Hashing a generated 10,000-file playbook tree: warm (stat cache hits) vs os.stat of the
same files (goal <= 1.5x); cold (empty cache) vs plain sha256 of the same bytes (goal <= 1.5x)."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.inputs.statcache import StatCache

FILES = 10_000


def make_tree(root: Path) -> list[Path]:
    paths = []
    for i in range(FILES):
        path = root / "roles" / f"role{i // 100}" / "tasks" / f"t{i}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"- name: task {i}\n  ansible.builtin.debug:\n    msg: {'x' * (i % 200)}\n")
        paths.append(path)
    old = time.time_ns() - 60_000_000_000  # not "racy": the cache may remember them
    for path in paths:
        os.utime(path, ns=(old, old))
    return paths


def best(fn: object, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="kiln-fp-"))
    paths = make_tree(root)

    def plain_stat() -> None:
        for p in paths:
            os.stat(p)

    def plain_sha() -> None:
        for p in paths:
            hashlib.sha256(p.read_bytes()).hexdigest()

    def cold() -> None:
        db = root / f"cold-{time.perf_counter_ns()}.marshal"
        cache = StatCache(db)
        for p in paths:
            cache.hash(p)
        cache.save()

    warm_db = root / "warm.marshal"
    seed = StatCache(warm_db)
    for p in paths:
        seed.hash(p)
    seed.save()

    def warm() -> None:
        cache = StatCache(warm_db)  # a new run: the cache comes from disk
        for p in paths:
            cache.hash(p)

    results = []
    for name, ours, base in (("warm vs os.stat", warm, plain_stat), ("cold vs sha256", cold, plain_sha)):
        a, b = best(ours), best(base)
        ok = a / b <= 1.5
        results.append(ok)
        print(
            f"fingerprint {FILES} files, {name}: kiln {a * 1000:.0f} ms, baseline {b * 1000:.0f} ms, "
            f"ratio {a / b:.2f}x (goal <= 1.5x: {'meets' if ok else 'MISSES'})"
        )
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
