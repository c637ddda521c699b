"""The scanner on its own (no doit, no cloud): Ansible constructs teams write, each resolved to
the files Ansible would read, on content written here."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_content import write

from tasks.errors import KilnError
from tasks.inputs.ansible_inputs import playbook_inputs
from tasks.inputs.ansible_layout import layout_for


def scan(root: Path, playbook: str = "site.yml") -> dict[str, str]:
    layout = layout_for(root, root, None)
    found = playbook_inputs(layout, root / playbook)
    return {str(p.relative_to(root)): why for p, why in found.files.items()}


def test_imports_includes_handlers_globs_and_template_includes(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "site.yml": "- import_playbook: web.yml\n",
            "web.yml": (
                "- hosts: all\n  vars:\n    token: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n"
                "  tasks:\n"
                "    - include_vars: {dir: settings}\n"
                "    - block:\n        - template: src=page.j2 dest=/srv/page\n"
                "    - copy: {src: '{{ playbook_dir }}/files/static.txt', dest: /srv/static}\n"
                "    - debug: msg={{ item }}\n      with_fileglob: ['conf.d/*.conf']\n"
                "    - mount: {src: /dev/sdb, path: /mnt}\n"
                "  handlers:\n    - import_tasks: handlers/restart.yml\n"
            ),
            "settings/a.yml": "a: 1\n",
            "templates/page.j2": "{% include 'header.j2' %}\n",
            "templates/header.j2": "header\n",
            "files/static.txt": "static\n",
            "files/conf.d/x.conf": "x\n",
            "files/unrelated.txt": "never read\n",
            "handlers/restart.yml": "- debug: msg=restart\n",
            "group_vars/all.yml": "x: 1\n",
            "library/my_module.py": "print()\n",
        },
    )
    found = scan(tmp_path)
    assert found["web.yml"] == "imported by site.yml"
    for rel in ("settings/a.yml", "templates/page.j2", "templates/header.j2", "files/static.txt",
                "files/conf.d/x.conf", "handlers/restart.yml", "group_vars/all.yml", "library/my_module.py"):  # fmt: skip
        assert rel in found, rel
    assert "files/unrelated.txt" not in found


def test_roles_dependencies_collections_and_templated_role_names(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "site.yml": (
                "- hosts: all\n  collections: [acme.tools]\n  roles:\n    - {role: app, when: true}\n    - hello\n"
                "  tasks:\n    - include_role: {name: '{{ which }}'}\n"
            ),
            "roles/app/meta/main.yml": "dependencies:\n  - role: base\n",
            "roles/app/tasks/main.yml": "- include_tasks: more.yml\n",
            "roles/app/tasks/more.yml": "- debug: msg=more\n",
            "roles/app/README.md": "for the role's developers\n",
            "roles/app/molecule/default/converge.yml": "- hosts: all\n",
            "roles/base/tasks/main.yml": "- debug: msg=base\n",
            "roles/spare/tasks/main.yml": "- debug: msg=spare\n",
            "collections/ansible_collections/acme/tools/galaxy.yml": "namespace: acme\nname: tools\nversion: 2.0.0\n",
            "collections/ansible_collections/acme/tools/roles/hello/tasks/main.yml": "- debug: msg=hi\n",
        },
    )
    found = scan(tmp_path)
    assert found["roles/base/tasks/main.yml"] == "role base (dependency of role app)"
    assert "roles/app/tasks/more.yml" in found
    assert "roles/app/README.md" not in found and "roles/app/molecule/default/converge.yml" not in found
    assert found["collections/ansible_collections/acme/tools/roles/hello/tasks/main.yml"].startswith(
        "collection acme.tools 2.0.0"
    )
    # A role named by a variable could be any of them: all are inputs.
    assert "roles/spare/tasks/main.yml" in found


def test_a_role_nowhere_is_one_line(tmp_path: Path) -> None:
    write(tmp_path, {"site.yml": "- hosts: all\n  roles: [ghost]\n"})
    with pytest.raises(KilnError, match="uses Ansible role 'ghost', which is not in roles/"):
        scan(tmp_path)
