"""A no-op run (4 roles x 3 regions on the sandbox, nothing changed) vs doit's own no-op on as
many tasks plus a bare boto3 script making the same DescribeImages calls (goal <= 1.3x).
Also counts kiln's cloud calls (goal: per region one for kiln's images, one for vendor images)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import compare, doit, env, scratch_catalog

REGIONS = "us-east-1,us-west-2,eu-west-1"
ARGS = ("core", "pipeline", "provider=sandbox", f"region={REGIONS}")

BOTO3_SCRIPT = """
import sys, boto3
endpoint = sys.argv[1]
session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
for region in sys.argv[2].split(","):
    ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint)
    ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:built-by", "Values": ["kiln"]}])
    ec2.describe_images(Owners=["136693071363"], Filters=[{"Name": "name", "Values": ["debian-12-amd64-*"]}])
"""


def main() -> int:
    root = scratch_catalog()
    try:
        doit(root, *ARGS)  # build once: afterwards every run is a no-op
        noop = doit(root, *ARGS)
        summary = noop.stderr.strip().splitlines()[-1]
        calls = int(re.search(r"\((\d+) cloud calls\)", summary).group(1))  # type: ignore[union-attr]
        tasks = len([t for t in doit(root, "list", "--all", *ARGS[2:]).stdout.splitlines() if ":" in t])
        endpoint = doit(root, "sandbox").stdout.strip()
        bare = Path(tempfile.mkdtemp(prefix="doit-bare-"))
        (bare / "dodo.py").write_text(
            "DOIT_CONFIG = {'dep_file': '.doit.sqlite3', 'backend': 'sqlite3', 'verbosity': 0}\n"
            "def task_t():\n"
            f"    for i in range({tasks}):\n"
            "        yield {'name': str(i), 'actions': ['true'], 'uptodate': [True]}\n"
        )
        doit(bare)
        script = bare / "lookups.py"
        script.write_text(BOTO3_SCRIPT)

        def baseline() -> None:
            doit(bare)
            subprocess.run([sys.executable, str(script), endpoint, REGIONS], env=env(), check=True)

        print(f"tasks: {tasks}; kiln's cloud calls in a no-op: {calls} (goal: {2 * len(REGIONS.split(','))})")
        ratio = compare("no-op run", lambda: doit(root, *ARGS), baseline, goal=1.3)
        return 0 if ratio <= 1.3 and calls == 2 * len(REGIONS.split(",")) else 1
    finally:
        doit(root, "sandbox-stop")


if __name__ == "__main__":
    sys.exit(main())
