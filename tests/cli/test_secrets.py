"""Credentials reach Packer through its environment only: never a rendered template, a var
file, a log, an export or the results database."""

from __future__ import annotations

from conftest import Kiln

# Obviously fake, but distinctive enough to find anywhere they might have been written.
FAKE = {
    "AWS_ACCESS_KEY_ID": "testing-akid-leakcheck-7f3a",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-leakcheck-91c2",  # pragma: allowlist secret (fake)
    "AWS_SESSION_TOKEN": "testing-token-leakcheck-5d8e",
}


def test_credentials_are_written_nowhere(kiln: Kiln) -> None:
    endpoint = kiln.doit("sandbox").stdout.strip()
    kiln.doit("base-vmi", "region=eu-west-1", env={**FAKE, "AWS_ENDPOINT_URL": endpoint})
    kiln.doit("core", "provider=sandbox", "region=us-east-1")
    assert kiln.builds() == 4
    written = [p for p in kiln.root.rglob("*") if p.is_file() and ".git" not in p.parts]
    assert any(p.suffix == ".log" for p in written) and any(p.name == "results.sqlite" for p in written)
    for path in written:
        data = path.read_bytes()
        for name, value in FAKE.items():
            assert value.encode() not in data, f"{name} leaked into {path.relative_to(kiln.root)}"
