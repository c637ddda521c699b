"""One build per fingerprint in a run over several regions, also with doit's parallel threads:
the chain is built once (in the home region) and copied to the other regions."""

from __future__ import annotations

from pathlib import Path

from conftest import Kiln, one_line_error

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
CHAIN = ("base-vmi", "server-base", "core", "pipeline")
TAGS = ("distro-id", "role-id", "customer", "fingerprint", "parent-image", "built-by")


def parallel(kiln: Kiln, *args: str, code: int = 0) -> str:
    return kiln.doit("-n", "3", "-P", "thread", "core", "pipeline", "provider=sandbox", *args, code=code).stderr


def test_three_regions_in_parallel_build_each_fingerprint_once(kiln: Kiln) -> None:
    err = parallel(kiln, f"region={','.join(REGIONS)}")
    builds = kiln.rows("SELECT role, region, status FROM builds ORDER BY role")
    # Exactly one Packer build per fingerprint, all in the first region named.
    assert [(b["role"], b["region"], b["status"]) for b in builds] == [
        (role, "us-east-1", "ok") for role in sorted(CHAIN)
    ], err
    images = kiln.rows("SELECT * FROM images WHERE state='available'")
    assert len(images) == 12
    assert {(r["origin"], r["region"]) for r in images} == {("built", "us-east-1")} | {
        ("copied", region) for region in REGIONS[1:]
    }
    assert len({r["fingerprint"] for r in images}) == 4
    assert "4 built, 8 copied" in err and "region fill saved 8 builds" in err
    for region in REGIONS:
        ids = [kiln.current(role, region) for role in CHAIN]
        described = kiln.ec2(region).describe_images(ImageIds=ids)["Images"]
        assert len(described) == 4
        for image in described:
            tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
            assert all(tag in tags for tag in TAGS), (region, image["ImageId"], tags)
        # Each copy's parent is the parent's copy in its own region.
        by_id = {i["ImageId"]: {t["Key"]: t["Value"] for t in i["Tags"]} for i in described}
        assert by_id[kiln.current("core", region)]["parent-image"] == kiln.current("server-base", region)
    again = parallel(kiln, f"region={','.join(REGIONS)}")
    assert "12 up to date" in again and kiln.builds() == 4


def test_the_customers_home_region_builds_and_copy_0_builds_everywhere(kiln: Kiln) -> None:
    conf = kiln.root / "customers/paxata/customer.toml"
    conf.write_text(
        conf.read_text().replace(
            'lease_table = "kiln-build-leases"', 'home_region = "eu-west-1"\nlease_table = "kiln-build-leases"'
        )
    )
    err = parallel(kiln, "region=us-east-1,eu-west-1")
    assert {(b["region"]) for b in kiln.rows("SELECT region FROM builds")} == {"eu-west-1"}, err
    assert kiln.builds() == 4
    assert "region fill saved 4 builds" in err

    kiln.edit("provision/ansible/core.yml", "# a change\n")
    err = parallel(kiln, "region=us-east-1,eu-west-1", "copy=0")
    core = kiln.rows("SELECT region FROM builds WHERE role='core' ORDER BY region")
    assert [r["region"] for r in core] == ["eu-west-1", "eu-west-1", "us-east-1"], err
    assert "region fill" not in err


def test_a_failed_build_is_not_copied_and_says_where_it_failed(kiln: Kiln, tmp_path: Path) -> None:
    kiln.doit("server-base", "provider=sandbox", "region=us-east-1,us-west-2")
    # Packer crashes on core's template: its one build fails, and nothing is copied.
    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/bash\ncase "$1 $*" in build*core.pkr.hcl*) echo "panic: stand-in crash"; exit 2;; esac\n'
        'exec /usr/bin/packer "$@"\n'
    )
    fake.chmod(0o755)
    err = kiln.doit(
        "-n",
        "3",
        "-P",
        "thread",
        "core",
        "provider=sandbox",
        "region=us-east-1,us-west-2",
        code=1,
        env={"PATH": f"{fake.parent}:/usr/bin:/bin"},
    ).stderr
    builds = kiln.rows("SELECT region, status FROM builds WHERE role='core'")
    assert [(b["region"], b["status"]) for b in builds] == [("us-east-1", "failed")], err
    lines = [line for line in err.splitlines() if line.startswith("kiln: core/")]
    assert any(line.startswith("kiln: core/debian-12/us-east-1: packer build failed: panic") for line in lines), err
    assert any(
        line.startswith(
            "kiln: core/debian-12/us-west-2: not copied: this run's one build of the image in us-east-1 failed"
        )
        for line in lines
    ), err
    assert not kiln.rows("SELECT * FROM images WHERE role='core'")


def test_an_unknown_home_region_is_one_line(kiln: Kiln) -> None:
    conf = kiln.root / "customers/paxata/customer.toml"
    conf.write_text('home_region = "us-middle-1"\n' + conf.read_text())
    proc = kiln.doit("core", "provider=sandbox", "region=us-east-1,eu-west-1", code=3)
    line = one_line_error(proc.stderr, "home_region")
    assert "customers/paxata/customer.toml: key 'home_region': unknown AWS region 'us-middle-1'; valid:" in line
