"""`doit verify <role>`: the role's verify play again, against the machine of its current image,
without a rebuild: the layer on provider=local, the target on the provisioned sandbox. The layer
is seen through a throw-away overlay, so a verify never changes a committed image."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tasks.errors import KilnError, valid_list
from tasks.fleet.context import Context
from tasks.records.current import current_row


def verify_command(run: Context, pos: list[str]) -> str:
    from tasks.build.overlay import scratch_view
    from tasks.build.rootfs import need_root
    from tasks.build.verify import VerifyFailed, run_verify

    catalog, o = run.catalog, run.options
    if len(pos) != 1 or pos[0] not in catalog.roles:
        shown = f"'{pos[0]}' is not a role" if len(pos) == 1 else "name one role"
        raise KilnError(f"doit verify: {shown}, e.g. doit verify core; roles: {valid_list(catalog.roles)}")
    name = pos[0]
    role = catalog.roles[name]
    verify = role.verify_play(catalog.root)
    if verify is None:
        raise KilnError(
            f"packer/{name}/role.toml: role {name} has no verify play;"
            f' write provision/ansible/verify/{name}.yml or set verify = "PATH"'
        )
    if o.provider == "local":
        machines = run.state / "local" / "layers"
    elif o.provider == "sandbox" and o.provision:
        machines = run.state / "sandbox" / "targets"
    else:
        raise KilnError(
            f"variable provider: doit verify needs a machine at hand: provider=local (the layer) or provider=sandbox"
            f" provision=1 (its target), not {o.provider}{'' if o.provision else ' without provision=1'};"
            " elsewhere the verify play runs in every build (force=1 rebuilds)"
        )
    need_root()
    playbook = role.playbook or ""
    env = run.ansible.play(playbook).layout.env()
    lines = []
    for distro in o.distros:
        for region in o.regions:
            label = f"{name} ({distro}, {region})"
            row = current_row(run.results, o.provider, o.customer, name, distro, region)
            if row is None:
                raise KilnError(
                    f"{label}: no current image to verify; build it first: doit {name} provider={o.provider}"
                )
            image_id = str(row["image_id"])
            tree = machines / (image_id if o.provider == "local" else f"{name}-{distro}")
            if not tree.is_dir():
                raise KilnError(f"{label}: {tree} is gone: no machine to verify {image_id} on; rebuild with force=1")
            lowers = run.provider.stack(image_id) if o.provider == "local" else [tree]
            extra = {
                "ansible_python_interpreter": str(catalog.distros[distro].conf["python"]),
                "kiln_role": name,
                **{k: str(v) for k, v in run.customer.conf.get("ansible_vars", {}).items()},
            }
            logs = run.state / "logs" / o.provider / o.customer / distro / region / name
            logs.mkdir(parents=True, exist_ok=True)
            log = logs / f"verify-{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}.log"
            started = time.monotonic()
            run.say(f"{label}: verifying {image_id} with {verify} (log {log})")
            try:
                with scratch_view(lowers, run.state / "work" / "verify" / f"{name}-{distro}-{region}") as view:
                    run_verify(view, catalog.root, verify, extra, env, log, label)
            except VerifyFailed:
                run.results.set_verified(o.provider, region, image_id, "failed")
                raise
            run.results.set_verified(o.provider, region, image_id, "passed")
            lines.append(f"{label}: {image_id} passed {verify} ({time.monotonic() - started:.1f} s)\n")
    return "".join(lines)
