"""Fail when detect-secrets finds anything in the tracked tree that the committed, audited
baseline (.secrets.baseline) does not list. Line numbers may move; a new secret may not."""

from __future__ import annotations

import json
import subprocess
import sys


def main() -> int:
    # The baseline holds hashes of audited findings, which look like secrets themselves.
    scan = subprocess.run(
        [sys.executable, "-m", "detect_secrets", "scan", "--exclude-files", r"^\.secrets\.baseline$"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(scan.stdout)["results"]
    with open(".secrets.baseline") as fh:
        known = {(f, s["hashed_secret"]) for f, items in json.load(fh)["results"].items() for s in items}
    new = [
        f"{f}:{s['line_number']}: {s['type']}"
        for f, items in found.items()
        for s in items
        if (f, s["hashed_secret"]) not in known
    ]
    for line in new:
        print(f"secret scan: possible credential at {line}", file=sys.stderr)
    if new:
        print(
            "secret scan: remove it (credentials come from the standard chains), or audit it into .secrets.baseline",
            file=sys.stderr,
        )
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
