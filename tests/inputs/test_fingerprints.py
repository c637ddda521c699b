"""Fingerprint inputs and the stat cache, on real files in temporary directories."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import Kiln

from tasks.inputs.fingerprints import fingerprint_of, period_start
from tasks.inputs.statcache import StatCache, sha256_file

SANDBOX = ("provider=sandbox", "region=us-east-1")


def test_stat_cache_reads_a_file_once_while_its_stat_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "play.yml"
    path.write_text("- hosts: all\n")
    old = time.time_ns() - 10_000_000_000
    os.utime(path, ns=(old, old))
    cache = StatCache(tmp_path / "cache.marshal")
    first = cache.hash(path)
    cache.save()
    assert first == sha256_file(path)
    # Same size, same mtime, same inode, other bytes: a fresh cache trusts the stat, as git does.
    path.write_text("- hosts: any\n")
    os.utime(path, ns=(old, old))
    assert StatCache(tmp_path / "cache.marshal").hash(path) == first
    # Any change of the stat makes it read the file again.
    os.utime(path, ns=(old + 1_000_000_000, old + 1_000_000_000))
    assert StatCache(tmp_path / "cache.marshal").hash(path) == sha256_file(path) != first


def test_a_file_written_just_now_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "fresh.yml"
    path.write_text("a\n")
    cache = StatCache(tmp_path / "cache.marshal")
    cache.hash(path)
    cache.save()
    assert not (tmp_path / "cache.marshal").exists(), "a racy entry must not be stored"


def test_fingerprint_is_canonical_and_periods_roll_over() -> None:
    assert fingerprint_of({"a": 1, "b": [1, 2]}) == fingerprint_of({"b": [1, 2], "a": 1})
    assert fingerprint_of({"a": 1}) != fingerprint_of({"a": 2})
    day = 86400
    assert period_start(30, now=30 * day * 700) == period_start(30, now=30 * day * 700 + 29 * day)
    assert period_start(30, now=30 * day * 700) != period_start(30, now=30 * day * 701)


def test_stored_manifests_hold_content_not_placement(kiln: Kiln) -> None:
    kiln.doit("core", *SANDBOX)
    rows = {r["role"]: r for r in kiln.rows("SELECT role, fingerprint, manifest FROM images")}
    core = json.loads(rows["core"]["manifest"])
    base = json.loads(rows["server-base"]["manifest"])
    root = json.loads(rows["base-vmi"]["manifest"])
    assert fingerprint_of(core) == rows["core"]["fingerprint"]
    assert core["parent"] == {"role": "server-base", "fingerprint": rows["server-base"]["fingerprint"]}
    assert "provision/ansible/core.yml" in core["files"]
    assert "provision/ansible/roles/common/tasks/main.yml" in core["files"]
    assert "provision/ansible/roles/core_service/defaults/main.yml" in core["files"]
    assert not any("pipeline" in f for f in core["files"])
    assert base["period"]["days"] == 30 and "period" not in core
    assert root["vendor_image"]["name"] == "debian-12-amd64-20260101"
    assert root["vendor_image"]["owner"] == "136693071363"
    assert root["files"] == {}
    assert core["customer"]["tags"] == {"owner": "platform-team", "cost-center": "golden-images"}
    text = rows["core"]["manifest"]
    # No region, no network ids, no machine paths, no account: a teammate computes the same.
    for placement in ("us-east-1", "vpc-", "subnet-", str(kiln.root), "123456789012", "packer-build"):
        assert placement not in text, placement
