"""Ansible content written by the tests, laid out the way Ansible's docs and ansible-galaxy lay
it out: vars_files, templates, included tasks, lookups and filter plugins beside a playbook, a
role on a roles_path named by ansible.cfg, a collection with a role and a filter plugin in the
playbook's adjacent collections/, and tarballs built by the real ansible-galaxy."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

ANSIBLE = "provision/ansible"
GALAXY = str(Path(sys.executable).parent / "ansible-galaxy")

CORE_PLAY = """---
- name: Core services image
  hosts: all
  become: true
  vars_files:
    - vars/core.yml
  roles:
    - common
    - core_service
    - site_tuning
    - acme.tools.hello
  tasks:
    - name: Write the app's settings
      ansible.builtin.template:
        src: app.conf.j2
        dest: /etc/app.conf
        mode: "0644"
    - name: Extra tasks
      ansible.builtin.include_tasks: tasks/extra.yml
    - name: Write a banner from a file, shouted by our filter
      ansible.builtin.copy:
        content: "{{ lookup('file', 'motd.txt') | shout }}\\n"
        dest: /etc/kiln-banner
        mode: "0644"
"""

FILES = {
    f"{ANSIBLE}/vars/core.yml": "---\napp_port: 8080\n",
    f"{ANSIBLE}/templates/app.conf.j2": "port = {{ app_port }}\n",
    f"{ANSIBLE}/tasks/extra.yml": (
        "---\n- name: Mark the extra tasks\n  ansible.builtin.copy:\n"
        '    content: "extra\\n"\n    dest: /etc/kiln-extra\n    mode: "0644"\n'
    ),
    f"{ANSIBLE}/files/motd.txt": "welcome\n",
    f"{ANSIBLE}/files/unused.txt": "no play reads this\n",
    f"{ANSIBLE}/filter_plugins/shout.py": (
        "def shout(value):\n    return str(value).upper()\n\n\n"
        "class FilterModule:\n    def filters(self):\n        return {'shout': shout}\n"
    ),
    f"{ANSIBLE}/ansible.cfg": "[defaults]\nroles_path = galaxy_roles\n",
    # A role as ansible-galaxy installs it, on the roles_path ansible.cfg names.
    f"{ANSIBLE}/galaxy_roles/site_tuning/tasks/main.yml": (
        "---\n- name: Tune the site\n  ansible.builtin.copy:\n"
        '    content: "tuned\\n"\n    dest: /etc/kiln-tuned\n    mode: "0644"\n'
    ),
    f"{ANSIBLE}/galaxy_roles/site_tuning/meta/main.yml": (
        "---\ngalaxy_info:\n  author: tests\n  description: site tuning\n  license: MIT\n"
        '  min_ansible_version: "2.14"\n  platforms: []\ndependencies: []\n'
    ),
    f"{ANSIBLE}/galaxy_roles/site_tuning/meta/.galaxy_install_info": "install_date: today\nversion: 1.0.0\n",
    # A collection in the playbook's adjacent collections/: a role using the collection's filter.
    f"{ANSIBLE}/collections/ansible_collections/acme/tools/galaxy.yml": (
        "namespace: acme\nname: tools\nversion: 1.2.0\nreadme: README.md\nauthors: [tests]\n"
    ),
    f"{ANSIBLE}/collections/ansible_collections/acme/tools/README.md": "acme.tools\n",
    f"{ANSIBLE}/collections/ansible_collections/acme/tools/meta/runtime.yml": '---\nrequires_ansible: ">=2.14"\n',
    f"{ANSIBLE}/collections/ansible_collections/acme/tools/roles/hello/tasks/main.yml": (
        "---\n- name: Say hello loudly\n  ansible.builtin.copy:\n"
        '    content: "{{ \'hello\' | acme.tools.loud }}\\n"\n    dest: /etc/kiln-hello\n    mode: "0644"\n'
    ),
    f"{ANSIBLE}/collections/ansible_collections/acme/tools/plugins/filter/loud.py": (
        "def loud(value):\n    return str(value).upper() + '!'\n\n\n"
        "class FilterModule:\n    def filters(self):\n        return {'loud': loud}\n"
    ),
}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def ordinary_layout(root: Path) -> None:
    """core.yml as teams write it, with every kind of input beside it."""
    write(root, {**FILES, f"{ANSIBLE}/core.yml": CORE_PLAY})


def collection_tarball(dest: Path, name: str, version: str, filter_body: str) -> Path:
    """A collection with a role and a filter, built into a tarball by the real ansible-galaxy."""
    ns, coll = name.split(".")
    src = dest / f"src-{name}-{version}"
    write(
        src,
        {
            "galaxy.yml": f"namespace: {ns}\nname: {coll}\nversion: {version}\nreadme: README.md\nauthors: [tests]\n",
            "README.md": f"{name}\n",
            "meta/runtime.yml": '---\nrequires_ansible: ">=2.14"\n',
            "roles/thing/tasks/main.yml": (
                "---\n- name: Do the thing\n  ansible.builtin.copy:\n"
                f'    content: "{{{{ \'thing\' | {name}.twice }}}}\\n"\n    dest: /etc/kiln-thing\n    mode: "0644"\n'
            ),
            "plugins/filter/twice.py": (
                f"def twice(value):\n    return {filter_body}\n\n\n"
                "class FilterModule:\n    def filters(self):\n        return {'twice': twice}\n"
            ),
        },
    )
    subprocess.run(
        [GALAXY, "collection", "build", "--force", "--output-path", str(dest), str(src)],
        check=True,
        capture_output=True,
    )
    return dest / f"{ns}-{coll}-{version}.tar.gz"


def role_tarball(dest: Path, name: str, task_text: str) -> Path:
    """A role packed the way Galaxy and git archives ship one: a top folder with tasks/ and meta/."""
    src = dest / f"src-{name}"
    write(
        src / name,
        {
            "tasks/main.yml": task_text,
            "meta/main.yml": (
                "---\ngalaxy_info:\n  author: tests\n  description: a packed role\n  license: MIT\n"
                '  min_ansible_version: "2.14"\n  platforms: []\ndependencies: []\n'
            ),
        },
    )
    out = dest / f"{name}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src / name, arcname=name)
    return out
