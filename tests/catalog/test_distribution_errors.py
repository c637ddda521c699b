"""Bad [distribution] and [lifecycle] values: one line naming the file and key, what is wrong and
what would be right, exit code 3, before anything runs (so `doit list` says it too)."""

from __future__ import annotations

import pytest
from conftest import Kiln, one_line_error

CUSTOMER = "customers/paxata/customer.toml"
ORG = "arn:aws:organizations::111122223333:organization/o-exampleorg1"


@pytest.mark.parametrize(
    ("table", "words"),
    [
        (
            '[distribution]\naccounts = ["12345"]',
            ["distribution.accounts", "'12345'", "12 digits", '"111122223333"'],
        ),
        (
            '[distribution]\naccounts = ["1111-2222-3333"]',
            ["distribution.accounts", "'1111-2222-3333'", "12 digits"],
        ),
        (
            '[distribution]\norganizations = ["o-exampleorg1"]',
            ["distribution.organizations", "'o-exampleorg1'", "organization ARN looks like"],
        ),
        (
            f'[distribution]\nous = ["{ORG}"]',
            ["distribution.ous", "OU ARN looks like"],
        ),
        (
            '[distribution]\nencrypt = true\nkms_keys = { "us-east-9" = "alias/images" }',
            ["distribution.kms_keys", "unknown AWS region 'us-east-9'", "valid:", "eu-west-1"],
        ),
        (
            '[distribution]\nkms_keys = { "us-east-1" = "alias/images" }',
            ["distribution.kms_keys", "'distribution.encrypt' is not true", "set encrypt = true"],
        ),
        (
            '[distribution]\nencrypt = true\nkms_keys = { "us-east-1" = "images" }',
            ["distribution.kms_keys.us-east-1", "'images'", "not a KMS key", '"alias/<name>"'],
        ),
        (
            '[distribution]\nencrypt = true\nkms_keys = { "us-east-1" ='
            ' "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab" }',
            ["distribution.kms_keys.us-east-1", "region eu-west-1", "needs a key of us-east-1"],
        ),
        ('[distribution]\nencrypt = "yes"', ["distribution.encrypt", "true or false"]),
        ('[distribution]\nshare = ["111122223333"]', ["unknown key 'distribution.share'", "distribution.accounts"]),
        (
            '[lifecycle]\ndeprecate_after = "soon"',
            ["lifecycle.deprecate_after", "'soon'", 'duration like "90d"'],
        ),
        ('[lifecycle]\nderegister_after = "90"', ["lifecycle.deregister_after", "'90'", 'like "90d"']),
        ("[lifecycle]\nkeep = 0", ["lifecycle.keep", "1 or more"]),
        (
            '[lifecycle]\ndisable_after = "180d"\nderegister_after = "90d"',
            ["lifecycle.deregister_after", "(90d) is sooner than 'lifecycle.disable_after' (180d)"],
        ),
    ],
)
def test_bad_customer_values(kiln: Kiln, table: str, words: list[str]) -> None:
    kiln.edit(CUSTOMER, f"\n{table}\n")
    proc = kiln.doit("list", code=3)
    one_line_error(proc.stderr, CUSTOMER, *words)


def test_bad_role_lifecycle(kiln: Kiln) -> None:
    kiln.edit("packer/core/role.toml", '\n[lifecycle]\ndisable_after = "a while"\n')
    proc = kiln.doit("core", "provider=sandbox", "region=us-east-1", code=3)
    one_line_error(proc.stderr, "packer/core/role.toml", "lifecycle.disable_after", "'a while'", '"90d"')
    assert not (kiln.state / "sandbox" / "pid").exists(), "a catalog mistake starts nothing"
