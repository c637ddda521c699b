"""An image's inputs are what its play reads, found as Ansible finds them: each kind of input,
edited, rebuilds exactly the roles whose play reads it (real doit, Packer, moto, ansible-galaxy)."""

from __future__ import annotations

import json
import subprocess

from ansible_content import ANSIBLE, collection_tarball, ordinary_layout, role_tarball, write
from conftest import Kiln, git_status

SANDBOX = ("provider=sandbox", "region=us-east-1")
ROLES = ("core", "pipeline")


def built_roles(kiln: Kiln, since: int) -> list[str]:
    return sorted(r["role"] for r in kiln.rows("SELECT role FROM builds WHERE id > ? ORDER BY id", (since,)))


def rebuilt_by(kiln: Kiln, rel: str, append: str = "\n# edited\n") -> list[str]:
    n = kiln.builds()
    kiln.edit(rel, append)
    kiln.doit(*ROLES, *SANDBOX)
    return built_roles(kiln, n)


def test_each_input_kind_rebuilds_exactly_the_roles_whose_play_reads_it(kiln: Kiln) -> None:
    ordinary_layout(kiln.root)
    kiln.doit(*ROLES, *SANDBOX)
    assert kiln.builds() == 4

    # Read by core's play alone.
    for rel in (
        "vars/core.yml",
        "templates/app.conf.j2",
        "tasks/extra.yml",
        "files/motd.txt",
        "galaxy_roles/site_tuning/tasks/main.yml",  # a role found through ansible.cfg's roles_path
        "collections/ansible_collections/acme/tools/plugins/filter/loud.py",  # a collection's plugin
        "collections/ansible_collections/acme/tools/roles/hello/tasks/main.yml",
    ):
        assert rebuilt_by(kiln, f"{ANSIBLE}/{rel}") == ["core"], rel
    # Loaded by every play of the folder: its plugins and its configuration.
    for rel in ("filter_plugins/shout.py", "ansible.cfg"):
        assert rebuilt_by(kiln, f"{ANSIBLE}/{rel}") == ["core", "pipeline", "server-base"], rel
    # The other playbook, and a file no play reads.
    assert rebuilt_by(kiln, f"{ANSIBLE}/pipeline.yml") == ["pipeline"]
    assert rebuilt_by(kiln, f"{ANSIBLE}/files/unused.txt") == []
    # ansible-galaxy's install date is not content.
    assert (
        rebuilt_by(kiln, f"{ANSIBLE}/galaxy_roles/site_tuning/meta/.galaxy_install_info", "install_date: now\n") == []
    )


def test_requirements_are_installed_once_and_their_content_is_the_input(kiln: Kiln) -> None:
    vendor = kiln.root / ANSIBLE / "vendor"
    vendor.mkdir(parents=True)
    collection_tarball(vendor, "acme.extra", "1.0.0", "str(value) * 2")
    role_tarball(vendor, "acme.web", "---\n- name: Serve\n  ansible.builtin.debug:\n    msg: web 1\n")
    requirements = (
        "---\nroles:\n  - src: vendor/acme.web.tar.gz\n    name: acme.web\n"
        "collections:\n  - name: vendor/acme-extra-{version}.tar.gz\n    type: file\n"
    )
    write(
        kiln.root,
        {
            f"{ANSIBLE}/requirements.yml": requirements.format(version="1.0.0"),
            f"{ANSIBLE}/pipeline.yml": (
                "---\n- name: Data pipeline image\n  hosts: all\n  become: true\n"
                "  roles:\n    - pipeline_worker\n    - acme.web\n    - acme.extra.thing\n"
            ),
        },
    )
    first = kiln.doit(*ROLES, *SANDBOX)
    assert kiln.builds() == 4
    assert "installing provision/ansible/requirements.yml with ansible-galaxy" in first.stderr
    installed = list((kiln.state / "galaxy").iterdir())
    assert len(installed) == 1
    assert (installed[0] / "roles/acme.web/tasks/main.yml").is_file()
    assert (installed[0] / "collections/ansible_collections/acme/extra/plugins/filter/twice.py").is_file()

    # Nothing changed: nothing installed, nothing built.
    again = kiln.doit(*ROLES, *SANDBOX)
    assert "ansible-galaxy" not in again.stderr and built_roles(kiln, 4) == []

    listing = kiln.doit("inputs", "pipeline", *SANDBOX).stdout
    assert "requirements:collections/ansible_collections/acme/extra/plugins/filter/twice.py" in listing
    assert "collection acme.extra 1.0.0 (requirements.yml)" in listing
    assert "requirements:roles/acme.web/tasks/main.yml" in listing

    # A version bump of the collection rebuilds pipeline only.
    n = kiln.builds()
    collection_tarball(vendor, "acme.extra", "1.1.0", "str(value) * 3")
    (kiln.root / ANSIBLE / "requirements.yml").write_text(requirements.format(version="1.1.0"))
    kiln.doit(*ROLES, *SANDBOX)
    assert built_roles(kiln, n) == ["pipeline"]
    assert "collection acme.extra 1.1.0" in kiln.doit("inputs", "pipeline", *SANDBOX).stdout

    # A new tarball under the same name (requirements.yml unchanged) installs again.
    n = kiln.builds()
    role_tarball(vendor, "acme.web", "---\n- name: Serve\n  ansible.builtin.debug:\n    msg: web 2\n")
    kiln.doit(*ROLES, *SANDBOX)
    assert built_roles(kiln, n) == ["pipeline"]


def test_a_requirement_that_cannot_be_installed_is_one_line(kiln: Kiln) -> None:
    # Nothing listens there: as without network.
    write(
        kiln.root,
        {
            f"{ANSIBLE}/requirements.yml": (
                "---\ncollections:\n  - name: http://127.0.0.1:9/acme-gone-1.0.0.tar.gz\n    type: url\n"
            ),
        },
    )
    proc = kiln.doit("core", *SANDBOX, code=3)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("kiln:") and "install failed" in ln]
    assert lines, proc.stderr
    assert "provision/ansible/requirements.yml: ansible-galaxy collection install failed" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_role_nowhere_on_the_search_path_is_one_line(kiln: Kiln) -> None:
    kiln.edit(f"{ANSIBLE}/core.yml", "    - acme.missing.role\n".replace("    -", "    -", 1))
    core = kiln.root / ANSIBLE / "core.yml"
    core.write_text(core.read_text().replace("    - core_service\n", "    - core_service\n    - nowhere_role\n"))
    proc = kiln.doit("core", *SANDBOX, code=3)
    assert "uses Ansible role 'nowhere_role', which is not in provision/ansible/roles/" in proc.stderr
    core.write_text(core.read_text().replace("    - nowhere_role\n", "    - acme.absent.web\n"))
    proc = kiln.doit("core", *SANDBOX, code=3)
    assert "collection acme.absent is not installed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doit_inputs_says_why_each_file_is_an_input(kiln: Kiln) -> None:
    ordinary_layout(kiln.root)
    out = kiln.doit("inputs", "core", *SANDBOX).stdout
    why = dict(line.split(None, 1) for line in out.splitlines() if line.startswith("  provision/"))
    assert why["provision/ansible/core.yml"].strip() == "the playbook"
    assert why["provision/ansible/vars/core.yml"].startswith("vars_files of play 'Core services image'")
    assert why["provision/ansible/templates/app.conf.j2"].startswith("src of template in play 'Core services image'")
    assert why["provision/ansible/tasks/extra.yml"].startswith("tasks included by play 'Core services image'")
    assert why["provision/ansible/files/motd.txt"].startswith("lookup('file') in provision/ansible/core.yml")
    assert why["provision/ansible/ansible.cfg"].startswith("Ansible's configuration")
    assert why["provision/ansible/galaxy_roles/site_tuning/tasks/main.yml"].startswith("role site_tuning")
    loud = why["provision/ansible/collections/ansible_collections/acme/tools/plugins/filter/loud.py"]
    assert loud.startswith("collection acme.tools 1.2.0 (provision/ansible/collections)")
    assert "provision/ansible/files/unused.txt" not in why
    assert "provision/ansible/galaxy_roles/site_tuning/meta/.galaxy_install_info" not in why
    assert "tools, recorded with each build but not part of the fingerprint: " in out and "ansible-core" in out
    data = json.loads(kiln.doit("inputs", "core", "format=json", *SANDBOX).stdout)
    assert data["files"]["provision/ansible/vars/core.yml"]["sha256"]
    # Mistakes are one line, exit 3.
    assert "unknown role 'nope'" in kiln.doit("inputs", "nope", *SANDBOX, code=3).stderr
    assert "name one role" in kiln.doit("inputs", *SANDBOX, code=3).stderr


def test_a_templated_reference_takes_its_folder_whole_and_says_so_once(kiln: Kiln) -> None:
    ordinary_layout(kiln.root)
    core = kiln.root / ANSIBLE / "core.yml"
    core.write_text(
        core.read_text()
        + "    - name: From a variable\n      ansible.builtin.debug:\n        msg: \"{{ lookup('file', banner_file) }}\"\n"
    )
    first = kiln.doit(*ROLES, *SANDBOX)
    notes = [ln for ln in first.stderr.splitlines() if "is an input as a whole" in ln]
    assert notes == [
        "kiln: provision/ansible/files/ is an input as a whole: lookup('file', banner_file) in"
        " provision/ansible/core.yml is only known when the play runs"
    ], first.stderr
    assert "is an input as a whole" not in kiln.doit(*ROLES, *SANDBOX).stderr, "said when building, not on a no-op"
    # files/ is now core's input as a whole: even the file no literal names rebuilds core.
    assert rebuilt_by(kiln, f"{ANSIBLE}/files/unused.txt") == ["core"]


def test_values_reach_packer_literally(kiln: Kiln) -> None:
    role = kiln.root / "packer/core/role.toml"
    role.write_text(role.read_text().replace(
        'description = "Core services role image, on top of server-base"',
        'description = "Core \\"quoted\\" ${var.region} %{ if true }x%{ endif } line1\\nline2"',
    ))  # fmt: skip
    customer = kiln.root / "customers/paxata/customer.toml"
    customer.write_text(customer.read_text().replace('owner = "platform-team"', 'owner = "ops \\"a\\" ${b}\\nc"'))
    kiln.doit("core", *SANDBOX)
    image = kiln.ec2().describe_images(ImageIds=[kiln.current("core")])["Images"][0]
    assert (
        image["Description"]
        == 'Core "quoted" ${var.region} %{ if true }x%{ endif } line1\nline2 (debian-12, built by kiln)'
    )
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["owner"] == 'ops "a" ${b}\nc'


def test_a_value_no_template_can_hold_is_one_line(kiln: Kiln) -> None:
    role = kiln.root / "packer/core/role.toml"
    role.write_text(role.read_text().replace('on top of server-base"', 'on top of \\u0007server-base"'))
    proc = kiln.doit("core", *SANDBOX, code=3)
    assert "packer/core/role.toml: key 'description': the value holds the control character '\\x07'" in proc.stderr
    customer = kiln.root / "customers/paxata/customer.toml"
    role.write_text(role.read_text().replace("\\u0007", ""))
    customer.write_text(customer.read_text().replace('company = "paxata"', '"bad-name" = "x"'))
    proc = kiln.doit("core", *SANDBOX, code=3)
    assert (
        "customers/paxata/customer.toml: key 'ansible_vars.bad-name': not a valid Ansible variable name" in proc.stderr
    )


def test_tool_versions_are_recorded_not_fingerprinted(kiln: Kiln) -> None:
    kiln.doit("core", *SANDBOX)
    row = kiln.rows("SELECT fingerprint, manifest FROM images WHERE role='core'")[0]
    manifest = json.loads(row["manifest"])
    assert manifest["tools"]["ansible-core"]
    assert manifest["reasons"]["provision/ansible/core.yml"] == "the playbook"
    from tasks.inputs.fingerprints import fingerprint_of

    assert fingerprint_of(manifest) == row["fingerprint"]
    other = {**manifest, "tools": {"ansible-core": "9.9.9"}, "reasons": {}}
    assert fingerprint_of(other) == row["fingerprint"]
    assert "built with ansible" in kiln.doit("why", "core", *SANDBOX).stdout


def test_no_run_writes_into_tracked_files(kiln: Kiln) -> None:
    endpoint = kiln.doit("sandbox").stdout.strip()
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    ec2 = kiln.ec2()
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    # The legacy export beside distro.toml exists and is tracked, as in a team's repository.
    write(
        kiln.root,
        {
            "customers/paxata/package/us-east-1.toml": f'vpc_id = "{vpc}"\nsubnet_id = "{subnet}"\n',
            "distros/debian-12/us-east-1.vmi.properties": "base-vmi=ami-0123456789abcdef0\n",
        },
    )
    git = ["git", "-C", str(kiln.root), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "a team's repository"], check=True)
    kiln.doit("base-vmi", "region=us-east-1", env=env)  # provider=aws, its endpoint overridden
    kiln.doit(*ROLES, *SANDBOX)
    kiln.doit("images", *SANDBOX)
    kiln.doit("inputs", "core", *SANDBOX)
    kiln.doit("lint")
    assert git_status(kiln.root) == "", git_status(kiln.root)
