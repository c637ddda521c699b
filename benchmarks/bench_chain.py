"""The sandbox chain of 4 images built by kiln vs the same 4 raw `packer build` runs with the
same templates and variable files (goal <= 1.5x). Both sides run against the same warm sandbox."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

from common import doit, env, scratch_catalog

ARGS = ("core", "pipeline", "provider=sandbox", "region=us-east-1")
CHAIN = ("base-vmi", "server-base", "core", "pipeline")


def main() -> int:
    root = scratch_catalog()
    try:
        doit(root, *ARGS)  # warms the sandbox and leaves each build's var file in its work dir
        work = root / ".kiln/work/sandbox/paxata/debian-12/us-east-1"
        rendered = root / ".kiln/rendered/sandbox/paxata/debian-12"
        packer_env = {**env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

        def raw_chain(round_no: int) -> None:
            for role in CHAIN:
                text = (work / role / "kiln.pkrvars.hcl").read_text()
                text = re.sub(r'image_name = "([^"]+)"', rf'image_name = "\1-raw{round_no}"', text)
                var_file = work / role / f"raw{round_no}.pkrvars.hcl"
                var_file.write_text(text)
                subprocess.run(
                    [
                        "packer",
                        "build",
                        "-machine-readable",
                        f"-var-file={var_file}",
                        str(rendered / f"{role}.pkr.hcl"),
                    ],
                    cwd=work / role,
                    env=packer_env,
                    check=True,
                    capture_output=True,
                )

        kiln_t: list[float] = []
        raw_t: list[float] = []
        for i in range(5):
            start = time.perf_counter()
            doit(root, *ARGS, "force=chain")
            kiln_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            raw_chain(i)
            raw_t.append(time.perf_counter() - start)
        a, b = statistics.median(kiln_t), statistics.median(raw_t)
        ok = a / b <= 1.5
        print(
            f"sandbox chain of 4: kiln {a * 1000:.0f} ms, 4 raw packer builds {b * 1000:.0f} ms, "
            f"ratio {a / b:.2f}x (goal <= 1.5x: {'meets' if ok else 'MISSES'})"
        )
        return 0 if ok else 1
    finally:
        doit(root, "sandbox-stop")


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.exit(main())
