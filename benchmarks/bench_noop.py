"""A no-op run on the sandbox, nothing changed, vs doit's own no-op on as many tasks plus a bare
boto3 script making the same DescribeImages calls (goal <= 1.3x), at two sizes: the shipped
catalog (4 roles x 3 regions: 12 images) and a grown one (24 roles x 2 distros x 3 regions: 144
images, 20 more playbooks sharing the shipped Ansible roles). Also counts kiln's cloud calls
(goal: per region one for kiln's images, one for vendor images)."""

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
    ec2.describe_images(Owners=["136693071363", "099720109477"],
                        Filters=[{"Name": "name", "Values": ["debian-12-amd64-*", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]}])
"""
GROWN_ROLES = 20


def grow(root: Path) -> tuple[str, ...]:
    """20 more role images on server-base, each with its own playbook using the shipped roles."""
    roles = []
    for n in range(GROWN_ROLES):
        name = f"app{n:02d}"
        roles.append(name)
        (root / "packer" / name).mkdir()
        (root / "packer" / name / "role.toml").write_text(f'description = "App {n}"\nparent = "server-base"\n')
        (root / "provision/ansible" / f"{name}.yml").write_text(
            f"---\n- name: App {n}\n  hosts: all\n  become: true\n  roles:\n    - common\n"
            f"    - {'pipeline_worker' if n % 2 else 'core_service'}\n"
        )
    return ("core", "pipeline", *roles)


def measure(label: str, root: Path, args: tuple[str, ...]) -> tuple[float, bool]:
    doit(root, *args)  # build once: afterwards every run is a no-op
    noop = doit(root, *args)
    summary = noop.stderr.strip().splitlines()[-1]
    calls = int(re.search(r"\((\d+) cloud calls\)", summary).group(1))  # type: ignore[union-attr]
    options = tuple(a for a in args if "=" in a)
    tasks = len([t for t in doit(root, "list", "--all", *options).stdout.splitlines() if ":" in t])
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

    print(f"{label}: {tasks} tasks; kiln's cloud calls in a no-op: {calls} (goal: {2 * len(REGIONS.split(','))})")
    ratio = compare(f"no-op run, {label}", lambda: doit(root, *args), baseline, goal=1.3)
    return ratio, calls == 2 * len(REGIONS.split(","))


def main() -> int:
    small, grown = scratch_catalog(), scratch_catalog()
    try:
        ok = [measure("12 images", small, ARGS)]
        roles = grow(grown)
        ok.append(
            measure(
                "144 images", grown, (*roles, "provider=sandbox", "distro=debian-12,ubuntu-22.04", f"region={REGIONS}")
            )
        )
        return 0 if all(r <= 1.3 and calls for r, calls in ok) else 1
    finally:
        doit(small, "sandbox-stop")
        doit(grown, "sandbox-stop")


if __name__ == "__main__":
    sys.exit(main())
