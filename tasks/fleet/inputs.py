"""`doit inputs <role>`: the image's inputs as a user reads them, each file with why kiln thinks
the play reads it. Local files only: no cloud, nothing built."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tasks.errors import KilnError, valid_list

if TYPE_CHECKING:
    from tasks.fleet.context import Context


def inputs_command(run: Context, roles: list[str], fmt: str) -> str:
    from tasks.inputs.fingerprints import input_files, tool_versions

    if len(roles) != 1:
        raise KilnError("doit inputs: name one role, e.g. `doit inputs core`")
    name = roles[0]
    if name not in run.catalog.roles:
        raise KilnError(f"doit inputs: unknown role '{name}'; valid: {valid_list(run.catalog.roles)}")
    if fmt not in ("table", "json"):
        raise KilnError(f"variable format: {fmt!r} is not valid for doit inputs; valid: json, table")
    role = run.catalog.roles[name]
    playbook, override = run.playbook(role)
    files = input_files(run.catalog, role, playbook, run.ansible)
    play = run.ansible.play(playbook) if playbook else None
    tools = {**tool_versions(), **(play.inputs.tools if play else {})} if playbook else {}
    notes = play.inputs.notes(run.catalog.root) if play else []
    o = run.options
    settings = [
        f"packer/{name}/role.toml",
        *(f"distros/{d}/distro.toml" for d in o.distros),
        f"customers/{o.customer}/customer.toml",
    ]
    if fmt == "json":
        doc = {
            "role": name,
            "playbook": playbook,
            "playbook_override": override,
            "files": {k: {"why": why, "sha256": run.statcache.hash(path)} for k, (path, why) in files.items()},
            "notes": notes,
            "settings": settings,
            "parent": role.parent,
            "tools": tools,
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"
    width = max((len(k) for k in files), default=0)
    head = f"{name}: its image is rebuilt when one of these changes"
    lines = [f"{head} (playbook {playbook}{', an override' if override else ''}):" if playbook else f"{head}:"]
    lines.append(f"files ({len(files)}):")
    lines += [f"  {k.ljust(width)}  {why}" for k, (_, why) in files.items()]
    if notes:
        lines.append("notes:")
        lines += [f"  {n}" for n in notes]
    lines.append(f"settings: the content keys of {', '.join(settings)}")
    lines.append("template: the Packer template as rendered for this role, distro and customer (packer/_templates/)")
    if role.parent:
        lines.append(f"parent: {role.parent}'s fingerprint (doit inputs {role.parent})")
    else:
        lines.append("vendor image: its name, owner and creation date (a new release rebuilds the chain)")
    if role.refresh_days:
        lines.append(f"period: the start of the current {role.refresh_days}-day refresh period")
    if tools:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(tools.items()))
        lines.append(f"tools, recorded with each build but not part of the fingerprint: {shown}")
    return "\n".join(lines) + "\n"
