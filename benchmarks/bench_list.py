"""`doit list` on the catalog vs bare doit listing as many trivial tasks (goal <= 1.3x)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import compare, doit, scratch_catalog


def main() -> int:
    root = scratch_catalog()
    count = len(doit(root, "list", "--all").stdout.splitlines())
    bare = Path(tempfile.mkdtemp(prefix="doit-bare-"))
    (bare / "dodo.py").write_text(
        "def task_t():\n"
        f"    for i in range({count}):\n"
        "        yield {'basename': f't{i}', 'doc': 'a trivial task', 'actions': None}\n"
    )
    doit(root, "list")  # warm caches on both sides
    doit(bare, "list")
    print(f"tasks listed: {count}")
    ratio = compare("doit list", lambda: doit(root, "list"), lambda: doit(bare, "list"), goal=1.3, rounds=9)
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
