"""The command line as a user meets it: listing, the sandbox commands, unknown tasks, parallel runs."""

from __future__ import annotations

import subprocess
import sys

from conftest import Kiln, sandbox_client

ROLES = {
    "base-vmi": "Root image",
    "server-base": "Patched base",
    "core": "Core services",
    "pipeline": "Data pipeline",
}


def test_list_shows_roles_with_descriptions_and_starts_nothing(kiln: Kiln) -> None:
    proc = kiln.doit("list")
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    for role, description in ROLES.items():
        assert description in lines[role]
    assert "_render" not in proc.stdout
    assert not (kiln.state / "sandbox" / "pid").exists()


def test_list_imports_no_cloud_sdk(kiln: Kiln) -> None:
    probe = (
        "import sys\n"
        "from doit.doit_cmd import DoitMain\n"
        "from doit.cmd_base import ModuleTaskLoader\n"
        "import dodo\n"
        "code = DoitMain(ModuleTaskLoader(dodo), config_filenames=()).run(['list'])\n"
        "heavy = sorted(m for m in ('boto3', 'botocore', 'moto', 'jinja2', 'yaml') if m in sys.modules)\n"
        "print('LOADED', ','.join(heavy), code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=kiln.root,
        env={**kiln.env, "PYTHONPATH": f"{kiln.root}:{kiln.env['PYTHONPATH']}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "LOADED  0" in proc.stdout, proc.stdout + proc.stderr


def test_unknown_role_is_one_line(kiln: Kiln) -> None:
    proc = kiln.doit("srever-base", "provider=sandbox", code=3)
    assert proc.stderr.strip().splitlines() == [
        "ERROR: unknown role or task 'srever-base'; roles: base-vmi, core, pipeline, server-base ('doit list' shows every task)"
    ]


def test_sandbox_prints_its_endpoint_and_stops(kiln: Kiln) -> None:
    proc = kiln.doit("sandbox")
    endpoint = proc.stdout.strip()
    assert endpoint.startswith("http://127.0.0.1:")
    ec2 = sandbox_client("ec2", endpoint, "us-east-1")
    names = {i["Name"] for i in ec2.describe_images(Owners=["136693071363"])["Images"]}
    assert "debian-12-amd64-20260101" in names
    again = kiln.doit("sandbox")
    assert again.stdout.strip() == endpoint, "a second call reuses the running server"
    stopped = kiln.doit("sandbox-stop")
    assert "sandbox stopped" in stopped.stderr
    assert not (kiln.state / "sandbox" / "pid").exists()


def test_independent_images_build_in_parallel_threads(kiln: Kiln) -> None:
    # copy=0: a region finishing first would otherwise fill the other by copy, which is right
    # but leaves fewer builds to count.
    proc = kiln.doit(
        "-n", "3", "-P", "thread", "core", "pipeline", "provider=sandbox", "region=us-east-1,eu-west-1", "copy=0"
    )
    assert kiln.builds() == 8, proc.stderr
    assert len(kiln.rows("SELECT * FROM images WHERE state='available'")) == 8
    assert {r["status"] for r in kiln.rows("SELECT status FROM builds")} == {"ok"}
