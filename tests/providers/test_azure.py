"""provider=azure. No Azure emulator exists, so the SDK's two entry points are faked at their
boundary (pytest-mock patches azure.identity.DefaultAzureCredential and
azure.mgmt.compute.ComputeManagementClient where kiln obtains them); everything of kiln's is
real, and doit runs in this process so the patches reach it. Packer's `validate`, `fmt` and
`version` are the real /usr/bin/packer; only `packer build`, which needs a subscription, is a
stand-in that validates the real template with the real var file and then does what azure-arm
does to the resource group (one managed image, tagged, in the manifest)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from conftest import Kiln
from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from tasks.build.packer_run import parse_artifact
from tasks.build.var_file import hcl_value
from tasks.packer_bin import packer_path, packer_version

SUB = "00000000-0000-0000-0000-000000000000"
RG = "paxata-images"
REAL_PACKER = "/usr/bin/packer"
# Fake secrets, distinctive enough to be found anywhere they might have been written.
FAKE_ENV = {
    "AZURE_CLIENT_ID": "testing-client-id",
    "AZURE_TENANT_ID": "testing-tenant-id",
    "AZURE_CLIENT_SECRET": "testing",  # pragma: allowlist secret (fake)
}


# -- the fake cloud: a resource group's images in a JSON file the fake `packer build` adds to ---


@dataclass
class FakeCloud:
    path: Path
    versions: dict[str, list[str]] = field(default_factory=dict)  # location -> marketplace versions
    groups: tuple[str, ...] = (RG,)
    calls: list[str] = field(default_factory=list)
    fail_update: bool = False
    fail_list: Exception | None = None
    vms: list[SimpleNamespace] = field(default_factory=list)
    scale_sets: list[SimpleNamespace] = field(default_factory=list)

    def load(self) -> list[dict[str, Any]]:
        return list(json.loads(self.path.read_text())) if self.path.exists() else []

    def save(self, images: list[dict[str, Any]]) -> None:
        self.path.write_text(json.dumps(images))

    @staticmethod
    def model(raw: dict[str, Any]) -> SimpleNamespace:
        # Shaped like azure.mgmt.compute.models.Image (flattened properties, no system_data).
        return SimpleNamespace(
            id=raw["id"],
            name=raw["name"],
            location=raw["location"],
            tags=dict(raw["tags"]),
            provisioning_state="Succeeded",
            system_data=None,
        )

    # ComputeManagementClient(credential, subscription_id)
    def client(self, credential: Any, subscription_id: str) -> SimpleNamespace:
        assert subscription_id == SUB
        credential.get_token("https://management.azure.com/.default")
        return SimpleNamespace(
            images=SimpleNamespace(
                list_by_resource_group=self.list_by_resource_group,
                get=self.get,
                begin_update=self.begin_update,
                begin_delete=self.begin_delete,
            ),
            virtual_machine_images=SimpleNamespace(list=self.list_versions),
            virtual_machines=SimpleNamespace(list_all=lambda: list(self.vms)),
            virtual_machine_scale_sets=SimpleNamespace(list_all=lambda: list(self.scale_sets)),
        )

    def list_by_resource_group(self, resource_group_name: str) -> list[SimpleNamespace]:
        self.calls.append("images.list_by_resource_group")
        if self.fail_list is not None:
            raise self.fail_list
        if resource_group_name not in self.groups:
            raise ResourceNotFoundError(message=f"Resource group '{resource_group_name}' could not be found.")
        return [self.model(i) for i in self.load()]

    def get(self, resource_group_name: str, image_name: str) -> SimpleNamespace:
        self.calls.append("images.get")
        for raw in self.load():
            if raw["name"] == image_name:
                return self.model(raw)
        raise ResourceNotFoundError(message=f"The Resource '{image_name}' was not found.")

    def begin_update(self, resource_group_name: str, image_name: str, parameters: Any) -> SimpleNamespace:
        self.calls.append("images.begin_update")
        if self.fail_update:
            raise HttpResponseError(message="Operation failed\nwith a second line")
        images = self.load()
        for raw in images:
            if raw["name"] == image_name:
                raw["tags"] = dict(parameters.tags)  # an update replaces the tag set
                self.save(images)
                return SimpleNamespace(result=lambda raw=raw: self.model(raw))
        raise ResourceNotFoundError(message=f"The Resource '{image_name}' was not found.")

    def begin_delete(self, resource_group_name: str, image_name: str) -> SimpleNamespace:
        self.calls.append("images.begin_delete")
        self.save([i for i in self.load() if i["name"] != image_name])
        return SimpleNamespace(result=lambda: None)

    def list_versions(self, location: str, publisher_name: str, offer: str, skus: str) -> list[SimpleNamespace]:
        self.calls.append("virtual_machine_images.list")
        if location not in self.versions:
            raise HttpResponseError(message=f"No registered resource provider found for location '{location}'.")
        return [SimpleNamespace(name=v, location=location) for v in self.versions[location]]


class FakeCredential:
    """What DefaultAzureCredential gives a logged-in user: a token, nothing else."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("testing", int(time.time()) + 3600)


# The stand-in for `packer build` only: azure-arm cannot build without a subscription. It runs
# the real `packer validate` on the real template and var file first.
FAKE_PACKER = """\
#!{python}
import json, os, re, subprocess, sys
REAL = {real!r}
if sys.argv[1:2] != ["build"]:
    os.execv(REAL, [REAL, *sys.argv[1:]])
var_file = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("-var-file="))
template = sys.argv[-1]
check = subprocess.run([REAL, "validate", "-var-file=" + var_file, template], capture_output=True, text=True)
if check.returncode != 0:
    print("1,,ui,error," + (check.stdout + check.stderr).replace(",", "%!(PACKER_COMMA)").replace("\\n", "\\\\n"))
    sys.exit(1)
text = open(var_file).read()
values = {{m[1]: json.loads(m[2]) for m in re.finditer(r'^(\\w+) = ("(?:[^"\\\\]|\\\\.)*")$', text, re.M)}}
block = re.search(r"^tags = \\{{\\n(.*?)\\n\\}}$", text, re.M | re.S)[1]
tags = dict((json.loads(k), json.loads(v)) for k, v in re.findall(r'^\\s*("(?:[^"\\\\]|\\\\.)*") = ("(?:[^"\\\\]|\\\\.)*")$', block, re.M))
image_id = "/subscriptions/{{}}/resourceGroups/{{}}/providers/Microsoft.Compute/images/{{}}".format(
    values["subscription_id"], values["resource_group"], values["image_name"])
cloud = {cloud!r}
images = json.load(open(cloud)) if os.path.exists(cloud) else []
images.append({{"id": image_id, "name": values["image_name"], "location": values["region"], "tags": tags}})
json.dump(images, open(cloud, "w"))
# What reached Packer's environment, by name only.
with open({seen!r}, "a") as fh:
    fh.write(json.dumps(sorted(k for k in os.environ if k.startswith("AZURE_"))) + "\\n")
json.dump({{"builds": [{{"artifact_id": image_id, "packer_run_uuid": "u1"}}], "last_run_uuid": "u1"}},
          open(values["manifest_path"], "w"))
print("1,,ui,say,==> azure-arm.image: (stand-in) made " + image_id)
print("1,,artifact-count,1")
"""


@dataclass
class Azure:
    kiln: Kiln
    cloud: FakeCloud
    seen: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def doit(self, *args: str, code: int = 0) -> tuple[str, str]:
        """The real doit CLI, in this process (so the SDK fakes reach it), in the catalog copy."""
        self.monkeypatch.chdir(self.kiln.root)
        spec = importlib.util.spec_from_file_location(f"dodo_{uuid.uuid4().hex}", self.kiln.root / "dodo.py")
        assert spec is not None and spec.loader is not None
        dodo = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dodo)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            got = DoitMain(ModuleTaskLoader(dodo), config_filenames=("pyproject.toml",)).run(list(args))
        except SystemExit as exit_:  # kiln's reporter chooses the exit code this way
            got = int(exit_.code or 0)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        out = self.capsys.readouterr()
        assert got == code, f"doit {' '.join(args)} exited {got}, wanted {code}\n{out.out[-3000:]}\n{out.err[-3000:]}"
        return out.out, out.err

    def images(self) -> list[dict[str, Any]]:
        return self.cloud.load()


@pytest.fixture
def azure(kiln: Kiln, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mocker: Any, capsys: Any) -> Iterator[Azure]:
    # The subprocess environment of the other tests (no credential, loopback only), here.
    for name in list(os.environ):
        if name.startswith(("AWS_", "AZURE_", "PACKER_", "KILN_")):
            monkeypatch.delenv(name)
    for name, value in kiln.env.items():
        if name != "PYTHONPATH":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cloud = FakeCloud(tmp_path / "cloud.json", versions={"eastus": ["0.20240101.9", "0.20240101.10", "0.20231201.3"]})
    seen = tmp_path / "packer-env.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "packer"
    fake.write_text(FAKE_PACKER.format(python=sys.executable, real=REAL_PACKER, cloud=str(cloud.path), seen=str(seen)))
    fake.chmod(0o755)
    # Only /usr/bin and /bin besides: no Azure CLI, no login to be found by accident.
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]))
    packer_path.cache_clear()  # kiln finds Packer once per process: let it find this PATH's
    packer_version.cache_clear()
    mocker.patch("azure.identity.DefaultAzureCredential", return_value=FakeCredential())
    mocker.patch("azure.mgmt.compute.ComputeManagementClient", side_effect=cloud.client)
    yield Azure(kiln, cloud, seen, monkeypatch, capsys)
    packer_path.cache_clear()
    packer_version.cache_clear()


def one_line(err: str, needle: str) -> str:
    lines = [line for line in err.splitlines() if needle in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# -- tests ----------------------------------------------------------------------------------------


def test_build_tags_records_and_exports_then_noop(azure: Azure) -> None:
    kiln = azure.kiln
    _, err = azure.doit("server-base", "provider=azure", "region=eastus")
    assert kiln.builds() == 2, err
    images = {i["tags"]["kiln-role"]: i for i in azure.images()}
    root, base = images["base-vmi"], images["server-base"]
    for role, image in images.items():
        tags = image["tags"]
        # The same tags as on AWS, plus the fingerprint, set after Packer as the commit point.
        assert {"distro-id", "role-id", "customer", "fingerprint", "parent-image", "built-by", "Name"} <= set(tags)
        assert (tags["built-by"], tags["customer"], tags["distro-id"]) == ("kiln", "paxata", "debian-12")
        assert tags["owner"] == "platform-team"  # the customer's own tags
        row = kiln.rows("SELECT * FROM images WHERE image_id=?", (image["id"],))[0]
        assert (row["provider"], row["account"], row["region"], row["role"]) == ("azure", SUB, "eastus", role)
        assert row["fingerprint"] == tags["fingerprint"] and row["origin"] == "built"
        assert image["id"].startswith(f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/images/")
    # "latest" resolved to the newest version (by number, not text), in the root's fingerprint.
    assert root["tags"]["parent-image"] == "Debian:debian-12:12-gen2:0.20240101.10"
    manifest = json.loads(kiln.rows("SELECT manifest FROM images WHERE image_id=?", (root["id"],))[0][0])
    assert manifest["vendor_image"]["name"] == "Debian:debian-12:12-gen2:0.20240101.10"
    # The child starts from its parent's managed image, in the same location.
    assert base["tags"]["parent-image"] == root["id"]
    variables = (kiln.state / "work/azure/paxata/debian-12/eastus/server-base/kiln.pkrvars.hcl").read_text()
    assert f'source_ami = "{root["id"]}"' in variables and 'resource_group = "paxata-images"' in variables
    # Unique names: role, distro, short fingerprint, time.
    assert re.fullmatch(r"server-base-debian-12-[0-9a-f]{12}-\d{17}", base["name"])
    export = (kiln.root / "distros/debian-12/eastus.vmi.properties").read_text()
    assert [x for x in export.splitlines() if not x.startswith("#")] == [
        f"base-vmi={root['id']}",
        f"server-base={base['id']}",
    ]
    # One listing of the resource group for the whole run, one version lookup, two tag updates.
    assert azure.cloud.calls.count("images.list_by_resource_group") == 1
    assert azure.cloud.calls.count("virtual_machine_images.list") == 1
    assert azure.cloud.calls.count("images.begin_update") == 2

    azure.cloud.calls.clear()
    azure.doit("server-base", "provider=azure", "region=eastus")
    assert kiln.builds() == 2
    assert azure.cloud.calls == ["virtual_machine_images.list", "images.list_by_resource_group"]

    # A new marketplace release changes the root's fingerprint: the chain rebuilds.
    azure.cloud.versions["eastus"].append("0.20240301.2")
    azure.doit("base-vmi", "provider=azure", "region=eastus")
    assert kiln.builds() == 3


def test_adopts_a_teammates_image_by_fingerprint_tag(azure: Azure) -> None:
    kiln = azure.kiln
    azure.doit("base-vmi", "provider=azure", "region=eastus")
    built = azure.images()
    assert len(built) == 1
    # A teammate's checkout: no state at all, the same resource group.
    shutil.rmtree(kiln.state)
    (kiln.root / "distros/debian-12/eastus.vmi.properties").unlink()
    _, err = azure.doit("base-vmi", "provider=azure", "region=eastus")
    assert kiln.builds() == 0
    assert "adopted" in err
    row = kiln.rows("SELECT * FROM images")[0]
    assert (row["image_id"], row["origin"], row["provider"]) == (built[0]["id"], "adopted", "azure")
    assert (kiln.root / "distros/debian-12/eastus.vmi.properties").read_text().endswith(f"base-vmi={built[0]['id']}\n")
    assert azure.cloud.calls.count("images.begin_update") == 1  # the first build's commit point only


def test_credentials_reach_packer_through_its_environment_only(azure: Azure) -> None:
    for name, value in FAKE_ENV.items():
        azure.monkeypatch.setenv(name, value)
    azure.doit("server-base", "provider=azure", "region=eastus")
    assert azure.kiln.builds() == 2
    seen = [json.loads(line) for line in azure.seen.read_text().splitlines()]
    assert seen == [sorted(FAKE_ENV)] * 2
    written = [p for p in azure.kiln.state.rglob("*") if p.is_file()]
    written += [azure.kiln.root / "distros/debian-12/eastus.vmi.properties"]
    assert any(p.suffix == ".log" for p in written) and any(p.name == "results.sqlite" for p in written)
    assert any(p.suffix == ".hcl" for p in written)
    for path in written:
        data = path.read_bytes()
        # "testing" is the secret and the fake token; no word of kiln's own output contains it.
        assert b"testing" not in data, f"a credential leaked into {path.relative_to(azure.kiln.root)}"


def test_missing_login_is_one_line(azure: Azure, mocker: Any) -> None:
    # The real class, from where azure.identity defines it (the fixture patched the package's name).
    import azure.identity._credentials.default as default_module

    # The real credential chain, without its network probes (managed identity, workload
    # identity) and editor caches: with no environment variables and no 'az', nothing logs in.
    def local_only(**kwargs: Any) -> Any:
        excluded = (
            "managed_identity",
            "workload_identity",
            "shared_token_cache",
            "visual_studio_code",
            "developer_cli",
            "powershell",
            "broker",
        )
        return default_module.DefaultAzureCredential(
            **{**kwargs, **{f"exclude_{c}_credential": True for c in excluded}}
        )

    mocker.patch("azure.identity.DefaultAzureCredential", side_effect=local_only)
    _, err = azure.doit("base-vmi", "provider=azure", "region=eastus", code=3)
    line = one_line(err, "Azure credentials")
    assert line.endswith(
        "Azure credentials: none found; run 'az login' or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET"
    )
    assert azure.kiln.builds() == 0 and azure.images() == []


def test_missing_resource_group_names_the_key(azure: Azure) -> None:
    azure.cloud.groups = ("another-group",)
    _, err = azure.doit("base-vmi", "provider=azure", "region=eastus", code=3)
    line = one_line(err, "azure.resource_group")
    assert "customers/paxata/customer.toml" in line and "'paxata-images' not found" in line


def test_access_denied_is_one_line(azure: Azure) -> None:
    denied = HttpResponseError(message="The client 'x' does not have authorization\nto perform action list")
    denied.status_code = 403
    azure.cloud.fail_list = denied
    _, err = azure.doit("base-vmi", "provider=azure", "region=eastus", code=3)
    line = one_line(err, "Azure permissions")
    assert "images.list_by_resource_group paxata-images was denied (403)" in line


def test_location_without_the_marketplace_image_is_one_line(azure: Azure) -> None:
    _, err = azure.doit("base-vmi", "provider=azure", "region=westeurope", code=3)
    line = one_line(err, "virtual_machine_images.list")
    assert "westeurope" in line and "No registered resource provider" in line


def test_tagging_refused_removes_the_image(azure: Azure) -> None:
    azure.cloud.fail_update = True
    _, err = azure.doit("base-vmi", "provider=azure", "region=eastus", code=1)
    line = one_line(err, "could not be tagged")
    assert "deregistered" in line and "Operation failed" in line and "second line" not in line
    assert azure.images() == [] and "images.begin_delete" in azure.cloud.calls


# -- without the SDK: options, rendering, listing --------------------------------------------------


def launched_from(image_id: str) -> SimpleNamespace:
    # Shaped like the SDK's StorageProfile: image_reference.id names a managed image.
    return SimpleNamespace(image_reference=SimpleNamespace(id=image_id.upper()))


def test_prune_keeps_images_a_vm_or_scale_set_uses(azure: Azure) -> None:
    for _ in range(4):
        azure.doit("base-vmi", "provider=azure", "region=eastus", "force=1")
    roots = [i["id"] for i in azure.images()]
    oldest, second, third, _newest = roots
    azure.cloud.vms.append(SimpleNamespace(name="web-1", storage_profile=launched_from(oldest)))
    azure.cloud.scale_sets.append(
        SimpleNamespace(name="web-vmss", virtual_machine_profile=SimpleNamespace(storage_profile=launched_from(second)))
    )
    out, _ = azure.doit("prune", "provider=azure", "region=eastus", "keep=1")
    assert "held back: used by virtual machine web-1" in out
    assert "held back: used by scale set web-vmss" in out
    assert "1 image(s) would be deregistered" in out
    out, _ = azure.doit("prune", "provider=azure", "region=eastus", "keep=1", "apply=1")
    assert "1 image(s) deregistered" in out
    assert [i["id"] for i in azure.images()] == [oldest, second, _newest]
    assert third not in {i["id"] for i in azure.images()}


def test_unknown_location_lists_the_customers_locations(kiln: Kiln) -> None:
    proc = kiln.doit("base-vmi", "provider=azure", "region=us-east-1", code=3)
    line = one_line(proc.stderr, "unknown Azure location")
    assert "variable region" in line and "azure.locations" in line and "eastus, westeurope" in line


def test_missing_azure_table_names_the_file(kiln: Kiln) -> None:
    path = kiln.root / "customers/paxata/customer.toml"
    path.write_text(path.read_text().split("\n[azure]\n")[0])
    proc = kiln.doit("base-vmi", "provider=azure", code=3)
    line = one_line(proc.stderr, "[azure]")
    assert "customers/paxata/customer.toml" in line and "provider=azure" in line
    kiln.doit("list", code=0)  # the other providers do not need it


def test_distro_without_azure_image_is_one_line(kiln: Kiln) -> None:
    proc = kiln.doit("base-vmi", "provider=azure", "distro=amazon-linux-2023", code=3)
    line = one_line(proc.stderr, "distros/amazon-linux-2023/distro.toml")
    assert "[azure]" in line


def test_doit_list_imports_no_cloud_sdk(kiln: Kiln) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "doit", "list", "provider=azure", "region=eastus"],
        cwd=kiln.root,
        env=kiln.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "server-base" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("azure", "boto3", "botocore")}


@pytest.mark.parametrize("distro", ["debian-12", "centos-7", "ubuntu-22.04", "rocky-9"])
def test_rendered_templates_pass_packer_validate(kiln: Kiln, distro: str) -> None:
    roles = ("base-vmi", "server-base", "core", "pipeline")
    for role in roles:
        kiln.doit(f"_render:{role}/{distro}/azure/paxata", "provider=azure", f"distro={distro}", "region=eastus")
    parent = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/images/base-vmi-x"
    for role in roles:
        rendered = kiln.state / f"rendered/azure/paxata/{distro}/{role}.pkr.hcl"
        text = rendered.read_text()
        assert 'source "azure-arm" "image"' in text and "eastus" not in text  # location is a variable
        assert ("custom_managed_image_name" in text) == (role != "base-vmi")
        variables = {
            "region": "eastus",
            "source_ami": parent if role != "base-vmi" else "Debian:debian-12:12-gen2:0.20240101.10",
            "image_name": f"{role}-{distro}-0123456789ab-20260101000000000",
            "tags": {"built-by": "kiln", "role-id": role, "parent-image": parent},
            "manifest_path": str(kiln.state / "manifest.json"),
            "subscription_id": SUB,
            "resource_group": RG,
            "vm_size": "Standard_B2s",
            "ansible_dir": str(kiln.root / "provision/ansible"),
            "playbook_file": str(kiln.root / f"provision/ansible/{role}.yml"),
            "packages_file": str(kiln.state / f"{role}.packages.tsv"),  # where the package listing lands
        }
        var_file = kiln.state / f"{role}.pkrvars.hcl"
        var_file.write_text("".join(f"{k} = {hcl_value(v)}\n" for k, v in sorted(variables.items())))
        for env in ({}, FAKE_ENV):  # 'az login', then a service principal from the environment
            proc = subprocess.run(
                [REAL_PACKER, "validate", f"-var-file={var_file}", str(rendered)],
                # Packer's ansible provisioner checks for ansible-playbook: kiln's, as in a build.
                env={**kiln.env, **env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), kiln.env["PATH"]])},
                capture_output=True,
                text=True,
                check=False,
            )
            assert proc.returncode == 0, f"{role}: {proc.stdout}{proc.stderr}"


def test_artifact_id_of_a_managed_image(tmp_path: Path) -> None:
    # azure-arm's artifact id is the resource id, with no "region:" prefix as on AWS.
    image_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/images/core-x"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"builds": [{"artifact_id": image_id, "packer_run_uuid": "u"}], "last_run_uuid": "u"}))
    assert parse_artifact(path) == image_id
