"""`doit validate`: a table of pre-flight checks, exit 0 only when all pass."""

from __future__ import annotations

from conftest import Kiln

SANDBOX = ("provider=sandbox", "region=us-east-1,eu-west-1")


def results(stdout: str) -> dict[tuple[str, str], str]:
    """(check, where) -> result, read by the header's column positions."""
    lines = stdout.splitlines()
    where, result, detail = (lines[0].index(h) for h in ("where", "result", "detail"))
    return {(line[:where].strip(), line[where:result].strip()): line[result:detail].strip() for line in lines[1:]}


def test_validate_passes_on_the_sandbox(kiln: Kiln) -> None:
    proc = kiln.doit("validate", *SANDBOX)
    checks = results(proc.stdout)
    assert set(checks) == {
        ("packer", "PATH"),
        ("credentials", "sandbox"),
        ("instance profile", "account"),
        ("secrets bucket", "account"),
        ("region", "us-east-1"),
        ("network", "us-east-1"),
        ("region", "eu-west-1"),
        ("network", "eu-west-1"),
    }
    assert set(checks.values()) == {"ok"}


def test_validate_fails_cleanly_without_credentials(kiln: Kiln) -> None:
    proc = kiln.doit("validate", "provider=aws", "region=us-east-1", code=1)
    assert "Traceback" not in proc.stderr
    checks = results(proc.stdout)
    assert checks[("packer", "PATH")] == "ok"
    assert checks[("credentials", "aws")] == "FAIL"
    assert checks[("instance profile", "account")] == "skipped"
    assert "AWS credentials: none found" in proc.stdout
    assert "kiln: validate: 1 of 6 checks failed; first: credentials" in proc.stderr


def test_validate_names_a_missing_instance_profile(kiln: Kiln) -> None:
    kiln.doit("sandbox")
    conf = kiln.root / "customers/paxata/customer.toml"
    conf.write_text(
        conf.read_text().replace('instance_profile = "packer-build"', 'instance_profile = "no-such-profile"')
    )
    proc = kiln.doit("validate", *SANDBOX, code=1)
    checks = results(proc.stdout)
    assert checks[("instance profile", "account")] == "FAIL"
    assert "customers/paxata/customer.toml: instance_profile 'no-such-profile' does not exist" in proc.stdout
    assert checks[("network", "us-east-1")] == "ok"
