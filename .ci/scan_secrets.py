"""Fail when detect-secrets finds anything in the tracked tree. A fake value a test needs is
marked on its own line with `pragma: allowlist secret`, where a reviewer sees it."""

from __future__ import annotations

import json
import subprocess
import sys


def main() -> int:
    scan = subprocess.run([sys.executable, "-m", "detect_secrets", "scan"], capture_output=True, text=True, check=True)
    found = json.loads(scan.stdout)["results"]
    new = [f"{f}:{s['line_number']}: {s['type']}" for f, items in found.items() for s in items]
    for line in new:
        print(f"secret scan: possible credential at {line}", file=sys.stderr)
    if new:
        print(
            "secret scan: remove it (credentials come from the standard chains); a fake test value is marked"
            " with `pragma: allowlist secret` on its line",
            file=sys.stderr,
        )
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
