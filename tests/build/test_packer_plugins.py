"""Current Packer (1.7 and newer; 1.10 and later bundle no plugins): a `required_plugins` block
beside, never inside, the fingerprinted template, and `packer init` before the first build.

Only Packer 1.6.6 runs here; newer Packer is the stand-in of tests/standin_packer.py (its
version, init, plugin listing and refusals), which hands builds to the real 1.6.6 and moto.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import Kiln
from standin_packer import calls, standin

SANDBOX = ("provider=sandbox", "region=us-east-1")


def kiln_lines(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("kiln: ") and needle in line]


def test_current_packer_gets_the_plugins_block_and_init_and_the_same_fingerprints(kiln: Kiln, tmp_path: Path) -> None:
    env = standin(tmp_path, "1.11.2")
    proc = kiln.doit("core", "pipeline", *SANDBOX, env=env)
    assert "4 built" in proc.stderr
    log = calls(env)
    verbs = [c["argv"][0] for c in log]
    inits = [c for c in log if c["argv"][0] == "init"]
    builds = [c for c in log if c["argv"][0] == "build"]
    assert len(builds) == 4
    # Once per plugin set: the lint's templates (amazon and the ansible provisioners) and the
    # sandbox's (amazon alone), each before any build or validate that needs it.
    sets = sorted(sorted(json.dumps(f) for f in c["files"].values()) for c in inits)
    assert len(inits) == 2 and len({tuple(s) for s in sets}) == 2, verbs
    assert verbs.index("init") < verbs.index("validate") < verbs.index("build")
    rendered = {p.name: p.read_text() for p in (kiln.state / "rendered/sandbox/paxata/debian-12").glob("*.pkr.hcl")}
    for build in builds:
        files = build["files"]
        assert isinstance(files, dict)
        # A folder: the rendered template unchanged, and the generated block beside it.
        assert set(files) == {"kiln-plugins.pkr.hcl", next(n for n in files if n != "kiln-plugins.pkr.hcl")}
        template = next(n for n in files if n != "kiln-plugins.pkr.hcl")
        assert files[template] == rendered[template]
        assert "required_plugins" not in files[template]
        block = files["kiln-plugins.pkr.hcl"]
        assert 'source  = "github.com/hashicorp/amazon"' in block and 'version = ">= 1.8.0, < 2.0.0"' in block
        assert "ansible" not in block  # the sandbox's templates have no Ansible provisioner
    # The lint validated the AWS render, with its Ansible provisioners, through the same block.
    validates = [c for c in log if c["argv"][0] == "validate"]
    assert len(validates) == 4  # the checks the images depend on: every role for debian-12
    for check in validates:
        files = check["files"]
        assert isinstance(files, dict)
        block, template = files.pop("kiln-plugins.pkr.hcl"), next(iter(files.values()))
        assert "github.com/hashicorp/amazon" in block
        assert ("github.com/hashicorp/ansible" in block) == ('provisioner "ansible' in template)
    rows = kiln.rows("SELECT packer, plugins, status FROM builds")
    assert {(r["packer"], r["plugins"], r["status"]) for r in rows} == {
        ("1.11.2", '{"github.com/hashicorp/amazon": "1.8.0"}', "ok")
    }
    assert kiln_lines(proc.stderr, "plugins ready (amazon 1.8.0")
    fingerprints = {r["role"]: r["fingerprint"] for r in kiln.rows("SELECT role, fingerprint FROM images")}

    # The real 1.6.6, from scratch (its own renders and lint): no block, the same fingerprints.
    for name in ("rendered", "lint", "work"):
        shutil.rmtree(kiln.state / name)
    for dep in kiln.state.glob("doit.sqlite3*"):
        dep.unlink()
    again = kiln.doit("core", "pipeline", *SANDBOX)
    assert "4 up to date" in again.stderr, again.stderr
    assert kiln.builds() == 4
    assert {
        p.name: p.read_text() for p in (kiln.state / "rendered/sandbox/paxata/debian-12").glob("*.pkr.hcl")
    } == rendered
    assert fingerprints == {r["role"]: r["fingerprint"] for r in kiln.rows("SELECT role, fingerprint FROM images")}


def test_packer_1_6_6_gets_no_block(kiln: Kiln) -> None:
    kiln.doit("base-vmi", *SANDBOX)
    row = kiln.rows("SELECT packer, plugins, log_path FROM builds")[0]
    assert (row["packer"], row["plugins"]) == ("1.6.6", None)
    # Handed the rendered file itself.
    header = Path(row["log_path"]).read_text().splitlines()[0]
    assert header.endswith(".kiln/rendered/sandbox/paxata/debian-12/base-vmi.pkr.hcl")
    assert not list(kiln.state.rglob("kiln-plugins.pkr.hcl"))


def test_plugins_already_installed_are_reused(kiln: Kiln, tmp_path: Path) -> None:
    env = standin(tmp_path, "1.15.0")
    have = Path(env["PACKER_PLUGIN_PATH"]) / "github.com/hashicorp/amazon/packer-plugin-amazon_v1.9.2_x5.0_linux_amd64"
    have.parent.mkdir(parents=True)
    have.write_text("the user's own\n")
    kiln.doit("base-vmi", *SANDBOX, env=env)
    assert sorted(p.name for p in have.parent.iterdir()) == [have.name], "init installed another amazon plugin"
    assert kiln.rows("SELECT plugins FROM builds")[0]["plugins"] == '{"github.com/hashicorp/amazon": "1.9.2"}'
    init_log = next((kiln.state / "packer/init").rglob("init.log")).read_text()
    assert "init" in init_log.splitlines()[0]


def test_init_without_network_is_one_line_with_the_install_commands(kiln: Kiln, tmp_path: Path) -> None:
    env = standin(tmp_path, "1.11.2", offline=True)
    proc = kiln.doit("base-vmi", *SANDBOX, env=env, code=3)
    lines = kiln_lines(proc.stderr, "packer init")
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    line = lines[0]
    assert "could not install the plugins kiln needs (Failed getting the" in line
    assert "plugin: could not get the release list: dial tcp: lookup github.invalid: no such host)" in line
    assert "packer plugins install github.com/hashicorp/amazon v1.8.0" in line
    assert "--path FILE" in line and "init.log" in line
    assert kiln.builds() == 0


def test_validate_reports_the_version_and_the_plugins(kiln: Kiln, tmp_path: Path) -> None:
    env = standin(tmp_path, "1.11.2")
    before = kiln.doit("validate", *SANDBOX, env=env, code=1)
    rows = {line.split()[0]: line for line in before.stdout.splitlines()[1:]}
    assert "version 1.11.2" in rows["packer"]
    assert " FAIL " in rows["plugins"]
    assert "amazon missing for Packer 1.11.2 (provider=sandbox)" in rows["plugins"]
    assert "packer plugins install github.com/hashicorp/amazon v1.8.0" in rows["plugins"]
    kiln.doit("base-vmi", *SANDBOX, env=env)  # its packer init installs amazon
    after = kiln.doit("validate", *SANDBOX, env=env)
    plugins = next(line for line in after.stdout.splitlines() if line.startswith("plugins"))
    assert " ok " in plugins
    assert "amazon 1.8.0" in plugins and "azure missing, not used by provider=sandbox" in plugins
    real = kiln.doit("validate", *SANDBOX)
    assert "version 1.6.6 (amazon, azure and ansible built in: no plugins needed)" in real.stdout
    assert not [line for line in real.stdout.splitlines() if line.startswith("plugins")]
