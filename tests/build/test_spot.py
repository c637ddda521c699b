"""Spot builds: `spot = true` and a list of instance types reach Packer's var file (placement:
never a fingerprint); when Packer reports no spot capacity the build runs once more on demand.

Real Packer 1.6.6 launches through EC2 Fleet against moto. moto always has capacity, so the
sandbox server plays a shortage when started with KILN_SANDBOX_NO_SPOT (1: spot, all: on demand
too), answering as EC2 does; what Packer prints of it is Packer's own.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import Kiln

SANDBOX = ("provider=sandbox", "region=us-east-1")
WORK = ".kiln/work/sandbox/paxata/debian-12/us-east-1"


def spot_customer(kiln: Kiln) -> None:
    conf = kiln.root / "customers/paxata/customer.toml"
    text = conf.read_text().replace(
        'instance_type = "t3.small"', 'instance_type = ["t3.small", "t3a.small"]\nspot = true'
    )
    assert "spot = true" in text
    conf.write_text(text)


def kiln_lines(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("kiln: ") and needle in line]


def test_spot_reaches_packer_and_changes_no_fingerprint(kiln: Kiln) -> None:
    spot_customer(kiln)
    # A role may say otherwise: server-base builds on demand.
    role = kiln.root / "packer/server-base/role.toml"
    role.write_text(role.read_text() + "spot = false\n")
    kiln.doit("server-base", *SANDBOX)
    variables = (kiln.root / WORK / "base-vmi/kiln.pkrvars.hcl").read_text()
    assert 'spot_price = "auto"' in variables
    assert 'spot_instance_types = ["t3.small", "t3a.small"]' in variables
    assert 'instance_type = ""' in variables
    rendered = (kiln.state / "rendered/sandbox/paxata/debian-12/base-vmi.pkr.hcl").read_text()
    assert re.search(r"^  spot_price +\= var\.spot_price$", rendered, re.M)
    assert re.search(r"^  spot_instance_types +\= var\.spot_instance_types$", rendered, re.M)
    log = Path(kiln.rows("SELECT log_path FROM builds WHERE role='base-vmi'")[0]["log_path"]).read_text()
    assert "Launching a spot AWS instance" in log
    on_demand = (kiln.root / WORK / "server-base/kiln.pkrvars.hcl").read_text()
    assert 'instance_type = "t3.small"' in on_demand and 'spot_price = ""' in on_demand
    rows = {r["role"]: (r["capacity"], r["instance_type"]) for r in kiln.rows("SELECT * FROM builds")}
    assert rows == {"base-vmi": ("spot", "t3.small, t3a.small"), "server-base": ("on-demand", "t3.small")}

    # Placement only: back to on demand, nothing is rebuilt.
    conf = kiln.root / "customers/paxata/customer.toml"
    conf.write_text(conf.read_text().replace("spot = true", "spot = false"))
    assert "2 up to date" in kiln.doit("server-base", *SANDBOX).stderr
    assert kiln.builds() == 2


def test_no_spot_capacity_falls_back_to_on_demand_once(kiln: Kiln) -> None:
    spot_customer(kiln)
    proc = kiln.doit("base-vmi", *SANDBOX, env={"KILN_SANDBOX_NO_SPOT": "1"})
    lines = kiln_lines(proc.stderr, "no spot capacity for")
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "kiln: base-vmi/debian-12/us-east-1: no spot capacity for t3.small, t3a.small (no Spot capacity available);"
        " building on demand on t3.small instead"
    )
    row = kiln.rows("SELECT * FROM builds")[0]
    assert (row["status"], row["capacity"], row["instance_type"]) == ("ok", "on-demand (no spot capacity)", "t3.small")
    spot_log = Path(row["log_path"]).with_name(Path(row["log_path"]).stem + ".spot.log")
    assert "There is no Spot capacity available" in spot_log.read_text()
    assert "Launching a source AWS instance" in Path(row["log_path"]).read_text()
    assert kiln.rows("SELECT origin FROM images")[0]["origin"] == "built"


def test_no_capacity_at_all_fails_after_one_fallback(kiln: Kiln) -> None:
    spot_customer(kiln)
    proc = kiln.doit("base-vmi", *SANDBOX, env={"KILN_SANDBOX_NO_SPOT": "all"}, code=1)
    assert len(kiln_lines(proc.stderr, "no spot capacity for")) == 1, proc.stderr
    failed = kiln_lines(proc.stderr, "packer build failed")
    assert len(failed) == 1 and "InsufficientInstanceCapacity" in failed[0], proc.stderr
    assert "Traceback" not in proc.stderr
    rows = kiln.rows("SELECT status, capacity FROM builds")
    assert [(r["status"], r["capacity"]) for r in rows] == [("failed", "on-demand (no spot capacity)")]
    assert not kiln.rows("SELECT * FROM images")
