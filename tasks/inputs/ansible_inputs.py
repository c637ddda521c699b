"""Everything a playbook reads, found the way Ansible finds it, each file with why it is one.

Structure is read from the YAML (plays, roles, includes, `src:`); references that live in
strings (lookups, FQCN filters and modules, Jinja includes) are read from the text. Whatever
cannot be resolved statically (a templated path) brings in the whole folder it could come from,
said once: a needless rebuild costs minutes, a missed input ships a stale image.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import KilnError
from tasks.inputs.ansible_layout import Layout, bundled_collections
from tasks.inputs.statcache import walk_files
from tasks.inputs.yaml_files import load_yaml, read_text

# Keys of a task that are not its action.
TASK_KEYWORDS = frozenset(
    [
        "name",
        "when",
        "register",
        "loop",
        "loop_control",
        "until",
        "retries",
        "delay",
        "become",
        "become_user",
        "become_method",
        "become_flags",
        "become_exe",
        "tags",
        "notify",
        "listen",
        "vars",
        "environment",
        "delegate_to",
        "delegate_facts",
        "ignore_errors",
        "ignore_unreachable",
        "changed_when",
        "failed_when",
        "no_log",
        "run_once",
        "check_mode",
        "diff",
        "any_errors_fatal",
        "throttle",
        "timeout",
        "debugger",
        "connection",
        "async",
        "poll",
        "args",
        "module_defaults",
        "collections",
        "port",
        "remote_user",
        "local_action",
        "action",
        "block",
        "rescue",
        "always",
    ]
)
INCLUDE_TASKS = frozenset({"include_tasks", "import_tasks", "include"})
INCLUDE_ROLE = frozenset({"include_role", "import_role"})
# Folders beside a playbook that Ansible loads whole, by name or implicitly.
ADJACENT_WHOLE = ("group_vars", "host_vars", "library", "module_utils")
# Lookups that read controller files, and the folder each searches.
FILE_LOOKUPS = {"file": "files", "fileglob": "files", "first_found": "files", "template": "templates",
                "unvault": "files", "ini": "files", "csvfile": "files"}  # fmt: skip
_LOOKUP = re.compile(
    r"""(?:lookup|query|q)\(\s*['"](?:ansible\.builtin\.|ansible\.legacy\.)?(\w+)['"]\s*,\s*(?:(['"])(.*?)\2|([^'")\s,][^,)]*))"""
)
_WITH = re.compile(r"^with_(\w+)$")
_FQCN = re.compile(r"\b([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.[a-z_][a-z0-9_]*")
_JINJA_REF = re.compile(r"""\{%-?\s*(?:include|import|extends|from)\s+['"]([^'"]+)['"]""")
_STATIC_VARS = re.compile(r"\{\{\s*(playbook_dir|role_path)\s*\}\}")
# Modules whose `src` is a file on the controller (by default); elsewhere `src` is the target's.
CONTROLLER_SRC = frozenset(
    {"template", "copy", "script", "unarchive", "synchronize", "patch", "win_template", "win_copy"}
)
# What a role or collection carries for its developers, not for plays: never read by Ansible
# (the read audit would say so), so editing them rebuilds nothing.
NOT_PLAYED = frozenset({".git", ".github", ".gitlab", "molecule", "tests", "docs", "changelogs", ".ansible-lint",
                        ".yamllint", ".gitignore", ".travis.yml", "tox.ini", ".pre-commit-config.yaml"})  # fmt: skip
NOT_PLAYED_PREFIXES = ("README", "LICENSE", "CHANGELOG", "CONTRIBUTING", "COPYING")
TEXT_SUFFIXES = (".yml", ".yaml", ".j2", ".json", ".cfg", ".ini", ".conf", ".txt", "")


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def _short(action: str) -> str:
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if action.startswith(prefix):
            return action[len(prefix) :]
    return action


@dataclass
class Collection:
    name: str
    path: Path
    version: str
    where: str  # what put it there: "requirements.yml", "provision/ansible/collections", ...


@dataclass
class PlayInputs:
    """What one playbook (with everything it pulls in) reads."""

    files: dict[Path, str] = field(default_factory=dict)  # file -> why it is an input
    whole: dict[Path, list[str]] = field(default_factory=dict)  # folder taken whole -> the references
    other_notes: list[str] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)  # bundled collections used: not content

    def add(self, path: Path, why: str) -> None:
        self.files.setdefault(path, why)

    def note(self, text: str) -> None:
        if text not in self.other_notes:
            self.other_notes.append(text)

    def notes(self, root: Path) -> list[str]:
        """One line per folder taken whole, naming the first reference that made it so."""
        out = list(self.other_notes)
        for folder, refs in self.whole.items():
            more = f" and {len(refs) - 1} more" if len(refs) > 1 else ""
            shown = folder.relative_to(root) if folder.is_relative_to(root) else folder
            out.append(f"{shown}/ is an input as a whole: {refs[0]} is only known when the play runs{more}")
        return out


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
        self._collections = self._index_collections()
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
                if top in NOT_PLAYED or (f.parent == path and f.name.startswith(NOT_PLAYED_PREFIXES)):
                    continue
            self.out.add(f, why)

    def _index_collections(self) -> dict[str, Collection]:
        found: dict[str, Collection] = {}
        for entry in self.layout.collections_path:
            base = entry if entry.name == "ansible_collections" else entry / "ansible_collections"
            if not base.is_dir():
                continue
            where = (
                "requirements.yml"
                if self.layout.installed and entry.is_relative_to(self.layout.installed)
                else self.shown(entry)
            )
            for ns in sorted(p for p in base.iterdir() if p.is_dir()):
                for coll in sorted(p for p in ns.iterdir() if p.is_dir()):
                    name = f"{ns.name}.{coll.name}"
                    if name not in found:  # the first on the path wins, as in Ansible
                        found[name] = Collection(name, coll, _collection_version(coll), where)
        return found

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
            colls = _names(play.get("collections"))
            ctx = _Ctx(None, base, base, colls, label)
            self._collection_list(colls, label)
            for item in _listed(play.get("vars_files")):
                for candidate in item if isinstance(item, list) else [item]:
                    self._relative(str(candidate), ctx, "vars", f"vars_files of {label}")
            for ref in _role_refs(play.get("roles")):
                self.role(ref, ctx, f"role {ref} (roles of {label})")
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                self.tasks(play.get(key), ctx)

    def _import_playbook(self, target: str, base: Path, shown: str) -> None:
        target = _STATIC_VARS.sub(str(base), target)
        if _templated(target):
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
        for sub in ADJACENT_WHOLE:
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
            colls = _names(task.get("collections"))
            if colls:
                self._collection_list(colls, ctx.where)
                ctx = _Ctx(ctx.role, ctx.here, ctx.playbook_dir, ctx.collections + colls, ctx.where)
            action, args = _action(task)
            if action is None:
                continue
            short = _short(action)
            where = ctx.where or self.shown(ctx.here)
            if short in INCLUDE_TASKS:
                target = args.get("file", args.get("_raw_params"))
                for path in self._relative(str(target or ""), ctx, "tasks", f"tasks included by {where}"):
                    if path not in self._files_done:
                        self._files_done.add(path)
                        inner = _Ctx(ctx.role, path.parent, ctx.playbook_dir, ctx.collections, self.shown(path))
                        self._text_refs(path, inner)
                        self.tasks(load_yaml(path, self.shown(path)), inner)
            elif short in INCLUDE_ROLE:
                name = args.get("name", args.get("_raw_params"))
                if isinstance(name, str) and name:
                    if _templated(name):
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
                m = _WITH.match(str(key))
                if m and m.group(1) in FILE_LOOKUPS:
                    for item in value if isinstance(value, list) else [value]:
                        self._lookup(m.group(1), str(item), ctx, f"with_{m.group(1)} in {where}")

    def _module(self, action: str, short: str, args: dict[str, Any], ctx: _Ctx, where: str) -> None:
        parts = action.split(".")
        if len(parts) == 3:
            self._collection(f"{parts[0]}.{parts[1]}", f"module {action} in {where}")
        src = args.get("src")
        if short == "script" and src is None and isinstance(args.get("_raw_params"), str):
            src = args["_raw_params"].split()[0] if args["_raw_params"].split() else None
        if src is None or parts[-1] not in CONTROLLER_SRC or args.get("remote_src") in (True, "yes", "true", "True"):
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
        target = _STATIC_VARS.sub(
            lambda m: str(ctx.playbook_dir) if m.group(1) == "playbook_dir" else m.group(0), target
        )
        if _templated(target):
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
        for c in dict.fromkeys(Path(_norm(p)) for p in candidates):
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
        sub = FILE_LOOKUPS[plugin]
        if plugin == "fileglob" and not _templated(arg):
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
        if path.suffix not in TEXT_SUFFIXES:
            return
        try:
            text = read_text(path)[0]
        except OSError:
            return
        where = self.shown(path)
        for m in _LOOKUP.finditer(text):
            plugin = m.group(1)
            if plugin not in FILE_LOOKUPS:
                continue
            if m.group(3) is not None:
                self._lookup(plugin, m.group(3), ctx, f"lookup('{plugin}') in {where}")
            else:  # a variable: the value is only known when the play runs
                self._whole(
                    FILE_LOOKUPS[plugin],
                    ctx,
                    f"lookup('{plugin}', {m.group(4).strip()}) in {where}",
                )
        for m in _FQCN.finditer(text):
            name = f"{m.group(1)}.{m.group(2)}"
            if name in self._collections or self._bundled_version(name):
                self._collection(name, f"{m.group(0)} in {where}")
        if sub == "templates" or path.suffix == ".j2":
            for m in _JINJA_REF.finditer(text):
                self._relative(m.group(1), ctx, "templates", f"included by template {where}")

    # -- roles -------------------------------------------------------------------------------

    def role(self, ref: str, ctx: _Ctx, why: str) -> None:
        path = self._find_role(ref, ctx)
        if path in self._roles_done:
            return
        self._roles_done.add(path)
        self.add_tree(path, why, packaged=True)
        rctx = _Ctx(path, path / "tasks", ctx.playbook_dir, ctx.collections, f"role {ref}")
        meta = _first(path / "meta", "main")
        if meta is not None:
            data = load_yaml(meta, self.shown(meta))
            if isinstance(data, dict):
                colls = _names(data.get("collections"))
                self._collection_list(colls, f"role {ref}")
                rctx = _Ctx(path, path / "tasks", ctx.playbook_dir, ctx.collections + colls, f"role {ref}")
                for dep in _role_refs(data.get("dependencies")):
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
                if self._bundled_version(coll):
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
                return Path(_norm(path))
        search = [ctx.playbook_dir / "roles", *self.layout.roles_path]
        if ctx.role is not None:
            search.append(ctx.role.parent)
        search.append(ctx.playbook_dir)
        for base in search:
            if (base / ref).is_dir():
                return Path(_norm(base / ref))
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
            version = self._bundled_version(name)
            if version:
                self.out.tools[name] = version
            return
        label = f"collection {name} {found.version} ({found.where})"
        self.add_tree(found.path, f"{label}, used by {why}", packaged=True)
        for dep in _collection_deps(found.path):
            self._collection(dep, f"a dependency of {name}")

    def _bundled_version(self, name: str) -> str:
        if self._bundled is None or "." not in name:
            return ""
        ns, coll = name.split(".", 1)
        path = self._bundled / ns / coll
        return _collection_version(path) if path.is_dir() else ""


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(c) for c in _listed(value) if isinstance(c, str))


def _norm(path: Path) -> str:
    import os

    return os.path.normpath(path)


def _first(folder: Path, stem: str) -> Path | None:
    for suffix in (".yml", ".yaml", ""):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _role_refs(items: Any) -> list[str]:
    names: list[str] = []
    for item in _listed(items):
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            name = item.get("role") or item.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def _action(task: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The task's module and its arguments, whichever of Ansible's spellings it uses."""
    for key in ("action", "local_action"):
        if key in task:
            value = task[key]
            if isinstance(value, dict):
                module = str(value.get("module", ""))
                return module or None, {k: v for k, v in value.items() if k != "module"}
            words = str(value).split(None, 1)
            return (words[0], _free_form(words[1] if len(words) > 1 else "")) if words else (None, {})
    for key, value in task.items():
        if key in TASK_KEYWORDS or str(key).startswith("with_"):
            continue
        args = dict(value) if isinstance(value, dict) else _free_form(str(value)) if value is not None else {}
        if isinstance(task.get("args"), dict):
            args = {**task["args"], **args}
        return str(key), args
    return None, {}


def _free_form(text: str) -> dict[str, Any]:
    """`src=a dest=b` or a free-form argument (include_tasks: x.yml)."""
    import shlex

    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    args: dict[str, Any] = {}
    raw = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and key.isidentifier():
            args[key] = value
        else:
            raw.append(word)
    if raw:
        args["_raw_params"] = " ".join(raw)
    return args


def _collection_version(path: Path) -> str:
    for name in ("MANIFEST.json", "galaxy.yml"):
        f = path / name
        if f.is_file():
            try:
                if name.endswith(".json"):
                    return str(json.loads(f.read_text())["collection_info"]["version"])
                data = load_yaml(f, str(f))
                return str(data.get("version", "")) if isinstance(data, dict) else ""
            except (KeyError, ValueError, OSError, KilnError):
                return ""
    return ""


def _collection_deps(path: Path) -> list[str]:
    deps: Any = {}
    manifest, galaxy = path / "MANIFEST.json", path / "galaxy.yml"
    try:
        if manifest.is_file():
            deps = json.loads(manifest.read_text()).get("collection_info", {}).get("dependencies") or {}
        elif galaxy.is_file():
            data = load_yaml(galaxy, str(galaxy))
            deps = data.get("dependencies") or {} if isinstance(data, dict) else {}
    except (ValueError, OSError, KilnError):
        deps = {}
    return sorted(str(d) for d in deps) if isinstance(deps, dict) else []


def playbook_inputs(layout: Layout, playbook: Path) -> PlayInputs:
    scanner = Scanner(layout)
    scanner.playbook(playbook, "the playbook")
    return scanner.out
