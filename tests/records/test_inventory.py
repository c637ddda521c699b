"""`doit images`: one table of current images; with a data format, stdout is exactly that document."""

from __future__ import annotations

import json
import tomllib

from conftest import Kiln, failure_line

SANDBOX = ("provider=sandbox", "region=us-east-1")
CHAIN = ["base-vmi", "server-base", "core", "pipeline"]


def test_images_in_every_format(kiln: Kiln) -> None:
    kiln.doit("core", "pipeline", *SANDBOX)
    table = kiln.doit("images", *SANDBOX).stdout.splitlines()
    assert table[0].split() == [
        "role",
        "distro",
        "region",
        "customer",
        "provider",
        "image_id",
        "origin",
        "age",
        "verified",
        "channels",
        "shared",
        "status",
        "size",
        "build",
    ]
    assert [line.split()[0] for line in table[1:]] == CHAIN
    assert all("up to date" in line for line in table[1:])
    # What each image keeps and the instance time that made it (moto's volumes are 15 GiB).
    assert all(" 15 GB/1 snap " in line and line.endswith(" t3.small") for line in table[1:]), table

    doc = json.loads(kiln.doit("images", *SANDBOX, "format=json").stdout)
    assert [i["role"] for i in doc["images"]] == CHAIN
    assert {i["image_id"] for i in doc["images"]} == {kiln.current(r) for r in CHAIN}
    # The same rows; only the age may have moved on between the two commands.
    toml_rows = tomllib.loads(kiln.doit("images", *SANDBOX, "format=toml").stdout)["images"]
    assert [{**r, "age": ""} for r in toml_rows] == [{**r, "age": ""} for r in doc["images"]]
    props = kiln.doit("images", *SANDBOX, "format=properties").stdout
    # The export downstream tools read comes from the same code.
    export = kiln.state / "exports/sandbox/paxata/debian-12/us-east-1.vmi.properties"
    assert [line for line in export.read_text().splitlines() if not line.startswith("#")] == props.splitlines()

    kiln.edit("provision/ansible/core.yml", "# a change\n")
    rows = json.loads(kiln.doit("images", *SANDBOX, "format=json", "role=core").stdout)["images"]
    assert [(r["role"], r["status"]) for r in rows] == [("core", "stale")]


def test_images_refuses_an_unknown_format(kiln: Kiln) -> None:
    proc = kiln.doit("images", *SANDBOX, "format=yaml", code=3)
    line = failure_line(proc.stderr, "format")
    assert "table, json, toml, properties" in line
    assert proc.stdout == ""
