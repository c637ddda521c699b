"""Everything a playbook reads, found the way Ansible finds it, each file with why it is one.

Structure is read from the YAML (plays, roles, includes, `src:`); references that live in
strings (lookups, FQCN filters and modules, Jinja includes) are read from the text. Whatever
cannot be resolved statically (a templated path) brings in the whole folder it could come from,
said once: a needless rebuild costs minutes, a missed input ships a stale image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.errors import KilnError
from tasks.inputs import ansible_syntax as syntax
from tasks.inputs.ansible_collections import (
    bundled_version,
    collection_deps,
    collections_on_path,
)
from tasks.inputs.ansible_layout import Layout, bundled_collections
from tasks.inputs.play_inputs import PlayInputs
from tasks.inputs.statcache import walk_files
from tasks.inputs.yaml_files import load_yaml, read_text


@dataclass
class _Ctx:
    """Where relative paths resolve: the role (if any), the current file's folder, the playbook's."""

    role: Path | None
    here: Path
    playbook_dir: Path
    collections: tuple[str, ...] = ()
    where: str = ""


class Scanner:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.root = layout.root
        self.out = PlayInputs()
        self._roles_done: set[Path] = set()
        self._files_done: set[Path] = set()
        self._colls_done: set[str] = set()
        self._collections = collections_on_path(layout, self.shown)
        self._bundled = bundled_collections()

    # -- helpers ---------------------------------------------------------------------------

    def shown(self, path: Path) -> str:
        installed = self.layout.installed
        if installed is not None and path.is_relative_to(installed):
            return f"requirements:{path.relative_to(installed)}"
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def add_tree(self, path: Path, why: str, packaged: bool = False) -> None:
        """Every file below path; for a role or collection (packaged) without what only its
        developers read (README, tests, CI)."""
        for f in walk_files(path):
            if f.name == ".galaxy_install_info":  # ansible-galaxy's install date: not content
                continue
            if packaged:
                top = f.relative_to(path).parts[0]
                if top in syntax.NOT_PLAYED or (f.parent == path and f.name.startswith(syntax.NOT_PLAYED_PREFIXES)):
                    continue
            self.out.add(f, why)

    # -- playbooks ---------------------------------------------------------------------------

    def playbook(self, path: Path, why: str) -> None:
        if path in self._files_done:
            return
        self._files_done.add(path)
        shown = self.shown(path)
        if not path.is_file():
            raise KilnError(f"{shown}: playbook does not exist")
        self.out.add(path, why)
        plays = load_yaml(path, shown)
        if not isinstance(plays, list):
            raise KilnError(f"{shown}: a playbook is a YAML list of plays")
        base = path.parent
        self._adjacent(base)
        self._text_refs(path, _Ctx(None, base, base, where=shown))
        for n, play in enumerate(plays, 1):
            if not isinstance(play, dict):
                continue
            imported = next(
                (play[k] for k in ("import_playbook", "ansible.builtin.import_playbook") if k in play), None
            )
            if imported is not None:
                self._import_playbook(str(imported), base, shown)
                continue
            label = f"play '{play.get('name', n)}' of {shown}"
            colls = syntax.names_of(play.get("collections"))
            ctx = _Ctx(None, base, base, colls, label)
            self._collection_list(colls, label)
            for item in syntax.listed(play.get("vars_files")):
                for candidate in item if isinstance(item, list) else [item]:
                    self._relative(str(candidate), ctx, "vars", f"vars_files of {label}")
            for ref in syntax.role_refs(play.get("roles")):
                self.role(ref, ctx, f"role {ref} (roles of {label})")
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                self.tasks(play.get(key), ctx)

    def _import_playbook(self, target: str, base: Path, shown: str) -> None:
        target = syntax.STATIC_VARS_RE.sub(str(base), target)
        if syntax.templated(target):
            self.out.note(f"{shown}: import_playbook {target!r} is templated; every playbook beside it is an input")
            for other in sorted(base.glob("*.y*ml")):
                self.playbook(other, f"a playbook {shown} may import")
            return
        path = Path(target) if Path(target).is_absolute() else base / target
        self.playbook(path, f"imported by {shown}")

    def _adjacent(self, base: Path) -> None:
        """What Ansible loads from beside a playbook without being asked: config, vars, plugins."""
        if self.layout.config is not None:
            self.out.add(self.layout.config, "Ansible's configuration (ansible.cfg)")
        for sub in syntax.ADJACENT_WHOLE:
            if (base / sub).is_dir():
                self.add_tree(base / sub, f"{sub}/ beside the playbook (Ansible loads it whole)")
        for plugins in sorted(base.glob("*_plugins")):
            if plugins.is_dir():
                self.add_tree(plugins, f"{plugins.name}/ beside the playbook (Ansible loads it whole)")
        for plugin_dir in self.layout.plugin_dirs:
            if plugin_dir.is_dir():
                self.add_tree(plugin_dir, f"plugin folder named by {self.shown(self.layout.config or base)}")

    # -- tasks -------------------------------------------------------------------------------

    def tasks(self, items: Any, ctx: _Ctx) -> None:
        if not isinstance(items, list):
            return
        for task in items:
            if not isinstance(task, dict):
                continue
            for key in ("block", "rescue", "always"):
                self.tasks(task.get(key), ctx)
            colls = syntax.names_of(task.get("collections"))
            if colls:
                self._collection_list(colls, ctx.where)
                ctx = _Ctx(ctx.role, ctx.here, ctx.playbook_dir, ctx.collections + colls, ctx.where)
            action, args = syntax.task_action(task)
            if action is None:
                continue
            short = syntax.short_name(action)
            where = ctx.where or self.shown(ctx.here)
            if short in syntax.INCLUDE_TASKS:
                target = args.get("file", args.get("_raw_params"))
                for path in self._relative(str(target or ""), ctx, "tasks", f"tasks included by {where}"):
                    if path not in self._files_done:
                        self._files_done.add(path)
                        inner = _Ctx(ctx.role, path.parent, ctx.playbook_dir, ctx.collections, self.shown(path))
                        self._text_refs(path, inner)
                        self.tasks(load_yaml(path, self.shown(path)), inner)
            elif short in syntax.INCLUDE_ROLE:
                name = args.get("name", args.get("_raw_params"))
                if isinstance(name, str) and name:
                    if syntax.templated(name):
                        self.out.note(f"{where}: {short} of a templated role name {name!r}; all roles are inputs")
                        self._all_roles(ctx)
                    else:
                        self.role(name, ctx, f"role {name} ({short} in {where})")
            elif short == "include_vars":
                target = args.get("file", args.get("dir", args.get("_raw_params")))
                self._relative(str(target or ""), ctx, "vars", f"include_vars in {where}", allow_dir=True)
            elif short == "import_playbook":
                self._import_playbook(str(args.get("_raw_params", "")), ctx.playbook_dir, where)
            else:
                self._module(action, short, args, ctx, where)
            for key, value in task.items():
                m = syntax.WITH_RE.match(str(key))
                if m and m.group(1) in syntax.FILE_LOOKUPS:
                    for item in value if isinstance(value, list) else [value]:
                        self._lookup(m.group(1), str(item), ctx, f"with_{m.group(1)} in {where}")

    def _module(self, action: str, short: str, args: dict[str, Any], ctx: _Ctx, where: str) -> None:
        parts = action.split(".")
        if len(parts) == 3:
            self._collection(f"{parts[0]}.{parts[1]}", f"module {action} in {where}")
        src = args.get("src")
        if short == "script" and src is None and isinstance(args.get("_raw_params"), str):
            src = args["_raw_params"].split()[0] if args["_raw_params"].split() else None
        if (
            src is None
            or parts[-1] not in syntax.CONTROLLER_SRC
            or args.get("remote_src") in (True, "yes", "true", "True")
        ):
            return
        sub = "templates" if "template" in short else "files"
        self._relative(str(src), ctx, sub, f"src of {short} in {where}", allow_dir=True, quiet_missing=True)

    # -- paths --------------------------------------------------------------------------------

    def _relative(
        self, target: str, ctx: _Ctx, sub: str, why: str, allow_dir: bool = False, quiet_missing: bool = False
    ) -> list[Path]:
        """Every file the reference can resolve to, in Ansible's search order (the role's folder
        first, then the current file's, then the playbook's): all that exist, to be safe."""
        if not target:
            return []
        if ctx.role is not None:
            target = target.replace("{{ role_path }}", str(ctx.role))
        target = syntax.STATIC_VARS_RE.sub(
            lambda m: str(ctx.playbook_dir) if m.group(1) == "playbook_dir" else m.group(0), target
        )
        if syntax.templated(target):
            self._whole(sub, ctx, f"{target!r} ({why})")
            return []
        candidates: list[Path] = []
        path = Path(target)
        if path.is_absolute():
            candidates.append(path)
        else:
            for base in ([ctx.role / sub, ctx.role, ctx.role / "tasks"] if ctx.role else []) + [
                ctx.here / sub,
                ctx.here,
                ctx.playbook_dir / sub,
                ctx.playbook_dir,
            ]:
                candidates.append(base / path)
        found: list[Path] = []
        for c in dict.fromkeys(Path(syntax.normalized(p)) for p in candidates):
            if c.is_file():
                found.append(c)
            elif allow_dir and c.is_dir():
                found += walk_files(c)
        inside = [f for f in found if f.is_relative_to(self.root) or self._outside_ok(f)]
        for f in inside:
            self.out.add(f, why)
            if f.suffix == ".j2" or sub == "templates":
                self._text_refs(f, _Ctx(ctx.role, f.parent, ctx.playbook_dir, ctx.collections, self.shown(f)), sub)
        return inside

    def _outside_ok(self, path: Path) -> bool:
        return any(path.is_relative_to(p) for p in (*self.layout.roles_path, *self.layout.collections_path))

    def _whole(self, sub: str, ctx: _Ctx, why: str) -> None:
        """A reference kiln cannot resolve: the folders it could come from are inputs (the role
        is one already, whole)."""
        folder = ctx.playbook_dir / sub
        if not folder.is_dir():
            return
        self.out.whole.setdefault(folder, []).append(why)
        self.add_tree(folder, f"{sub}/ taken whole: {why}")

    def _lookup(self, plugin: str, arg: str, ctx: _Ctx, why: str) -> None:
        sub = syntax.FILE_LOOKUPS[plugin]
        if plugin == "fileglob" and not syntax.templated(arg):
            for base in ([ctx.role / sub] if ctx.role else []) + [
                ctx.here / sub,
                ctx.playbook_dir / sub,
                ctx.playbook_dir,
            ]:
                for f in sorted(base.glob(arg)) if base.is_dir() else []:
                    if f.is_file():
                        self.out.add(f, why)
            return
        self._relative(arg, ctx, sub, why)

    def _text_refs(self, path: Path, ctx: _Ctx, sub: str = "") -> None:
        """Lookups, FQCN references and Jinja includes written in a file's text."""
        if path.suffix not in syntax.TEXT_SUFFIXES:
            return
        try:
            text = read_text(path)[0]
        except OSError:
            return
        where = self.shown(path)
        for m in syntax.LOOKUP_RE.finditer(text):
            plugin = m.group(1)
            if plugin not in syntax.FILE_LOOKUPS:
                continue
            if m.group(3) is not None:
                self._lookup(plugin, m.group(3), ctx, f"lookup('{plugin}') in {where}")
            else:  # a variable: the value is only known when the play runs
                self._whole(
                    syntax.FILE_LOOKUPS[plugin],
                    ctx,
                    f"lookup('{plugin}', {m.group(4).strip()}) in {where}",
                )
        for m in syntax.FQCN_RE.finditer(text):
            name = f"{m.group(1)}.{m.group(2)}"
            if name in self._collections or bundled_version(self._bundled, name):
                self._collection(name, f"{m.group(0)} in {where}")
        if sub == "templates" or path.suffix == ".j2":
            for m in syntax.JINJA_REF_RE.finditer(text):
                self._relative(m.group(1), ctx, "templates", f"included by template {where}")

    # -- roles -------------------------------------------------------------------------------

    def role(self, ref: str, ctx: _Ctx, why: str) -> None:
        path = self._find_role(ref, ctx)
        if path in self._roles_done:
            return
        self._roles_done.add(path)
        self.add_tree(path, why, packaged=True)
        rctx = _Ctx(path, path / "tasks", ctx.playbook_dir, ctx.collections, f"role {ref}")
        meta = syntax.first_file(path / "meta", "main")
        if meta is not None:
            data = load_yaml(meta, self.shown(meta))
            if isinstance(data, dict):
                colls = syntax.names_of(data.get("collections"))
                self._collection_list(colls, f"role {ref}")
                rctx = _Ctx(path, path / "tasks", ctx.playbook_dir, ctx.collections + colls, f"role {ref}")
                for dep in syntax.role_refs(data.get("dependencies")):
                    self.role(
                        dep,
                        _Ctx(path, path, ctx.playbook_dir, rctx.collections),
                        f"role {dep} (dependency of role {ref})",
                    )
        for sub in ("tasks", "handlers"):
            for f in sorted(p for p in walk_files(path / sub) if p.suffix in (".yml", ".yaml")):
                inner = _Ctx(path, f.parent, ctx.playbook_dir, rctx.collections, self.shown(f))
                self.tasks(load_yaml(f, self.shown(f)), inner)
        for f in walk_files(path):
            self._text_refs(f, _Ctx(path, f.parent, ctx.playbook_dir, rctx.collections, self.shown(f)))

    def _find_role(self, ref: str, ctx: _Ctx) -> Path:
        parts = ref.split(".")
        if len(parts) >= 3:  # ns.coll.role: a collection's role
            coll = f"{parts[0]}.{parts[1]}"
            found = self._collections.get(coll)
            if found is None:
                if bundled_version(self._bundled, coll):
                    raise KilnError(
                        f"{ctx.where}: role {ref} comes from collection {coll} bundled with the ansible package;"
                        " pin it in provision/ansible/requirements.yml so its content is an input"
                    )
                raise KilnError(
                    f"{ctx.where}: uses role {ref}, but collection {coll} is not installed; add it to"
                    f" {self.shown(ctx.playbook_dir)}/requirements.yml or {self.shown(ctx.playbook_dir)}/collections/"
                )
            self._collection(coll, f"role {ref}")
            role = found.path / "roles" / ".".join(parts[2:])
            if not role.is_dir():
                raise KilnError(
                    f"{ctx.where}: collection {coll} ({self.shown(found.path)}) has no role '{'.'.join(parts[2:])}'"
                )
            return role
        if "/" in ref:
            path = Path(ref) if Path(ref).is_absolute() else ctx.playbook_dir / ref
            if path.is_dir():
                return Path(syntax.normalized(path))
        search = [ctx.playbook_dir / "roles", *self.layout.roles_path]
        if ctx.role is not None:
            search.append(ctx.role.parent)
        search.append(ctx.playbook_dir)
        for base in search:
            if (base / ref).is_dir():
                return Path(syntax.normalized(base / ref))
        for coll in ctx.collections:  # a play's `collections:` makes short role names resolve there
            found = self._collections.get(coll)
            if found is not None and (found.path / "roles" / ref).is_dir():
                self._collection(coll, f"role {ref}")
                return found.path / "roles" / ref
        looked = ", ".join(f"{self.shown(b)}/" for b in search[:-1])
        raise KilnError(f"{ctx.where}: uses Ansible role '{ref}', which is not in {looked}")

    def _all_roles(self, ctx: _Ctx) -> None:
        for base in [ctx.playbook_dir / "roles", *self.layout.roles_path]:
            if base.is_dir():
                for d in sorted(p for p in base.iterdir() if p.is_dir()):
                    self.role(d.name, ctx, f"role {d.name} (a templated include_role may use it)")

    # -- collections --------------------------------------------------------------------------

    def _collection_list(self, names: tuple[str, ...], where: str) -> None:
        for name in names:
            if name.count(".") == 1:
                self._collection(name, f"collections of {where}")

    def _collection(self, name: str, why: str) -> None:
        if name in self._colls_done or name.startswith(("ansible.builtin", "ansible.legacy")):
            return
        self._colls_done.add(name)
        found = self._collections.get(name)
        if found is None:
            version = bundled_version(self._bundled, name)
            if version:
                self.out.tools[name] = version
            return
        label = f"collection {name} {found.version} ({found.where})"
        self.add_tree(found.path, f"{label}, used by {why}", packaged=True)
        for dep in collection_deps(found.path):
            self._collection(dep, f"a dependency of {name}")


def playbook_inputs(layout: Layout, playbook: Path) -> PlayInputs:
    scanner = Scanner(layout)
    scanner.playbook(playbook, "the playbook")
    return scanner.out
