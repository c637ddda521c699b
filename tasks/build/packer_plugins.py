"""Packer plugins for Packer 1.7 and newer: which ones a template needs (packer/plugins.toml),
the `required_plugins` block that declares them, `packer init` once per plugin set, and the
versions installed.

The block never enters the rendered template, which is fingerprinted: kiln hands Packer a
folder holding a copy of the rendered template and a generated `kiln-plugins.pkr.hcl` (Packer
reads every *.pkr.hcl of a folder, and each file may have its own `packer` block). So the same
catalog gives the same fingerprints with Packer 1.6.6 (no block) and 1.15 (block).

Packer's own plugin folder is used (PACKER_PLUGIN_PATH, else ~/.config/packer/plugins):
`packer init` installs only what no installed version satisfies, so plugins a user already has
are reused and a run whose plugins are all present needs no network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.catalog.schema import Field, check, read_toml
from tasks.errors import KilnError

CATALOG = "packer/plugins.toml"
PLUGIN_FILE = "kiln-plugins.pkr.hcl"
_SPEC = {
    "source": Field(str, required=True),
    "version": Field(str, required=True),
    "components": Field(list, required=True),
}
_SOURCE = re.compile(r"^[a-z0-9.-]+\.[a-z]+/[\w.-]+/[\w.-]+$")
# The blocks of a template that name a component: source "amazon-ebs", provisioner "ansible", ...
_BLOCK = re.compile(r'^\s*(?:source|provisioner|post-processor|data)\s+"([\w-]+)"', re.M)

# -- version constraints (HashiCorp's syntax) ----------------------------------------------------

_OPS = ("~>", ">=", "<=", "!=", "=", ">", "<")
_PART = re.compile(r"^\s*(~>|>=|<=|!=|=|>|<)?\s*v?(\d+(?:\.\d+){0,2})\s*$")


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(x) for x in text.split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


def parse_constraint(text: str, shown: str) -> list[tuple[str, str]]:
    """[(operator, version)], or a one-line error naming the file and key."""
    out: list[tuple[str, str]] = []
    for piece in text.split(","):
        match = _PART.match(piece)
        if match is None:
            raise KilnError(
                f'{shown}: {piece.strip()!r} is not a version constraint; write e.g. ">= 1.2.0, < 2.0.0" or "~> 1.2"'
            )
        out.append((match.group(1) or "=", match.group(2)))
    return out


def satisfies(version: str, constraint: list[tuple[str, str]]) -> bool:
    have = _version(version)
    for op, raw in constraint:
        want = _version(raw)
        if op == "~>":
            # ~> 1.2 admits 1.x from 1.2; ~> 1.2.3 admits 1.2.x from 1.2.3.
            depth = raw.count(".")
            upper = (want[0] + 1, 0, 0) if depth <= 1 else (want[0], want[1] + 1, 0)
            ok = want <= have < upper
        else:
            ok = {
                "=": have == want,
                "!=": have != want,
                ">": have > want,
                ">=": have >= want,
                "<": have < want,
                "<=": have <= want,
            }[op]
        if not ok:
            return False
    return True


def lowest(constraint: list[tuple[str, str]]) -> str | None:
    """The lowest version a constraint admits, for `packer plugins install` (None: no floor)."""
    floors = [_version(v) for op, v in constraint if op in ("=", ">=", "~>")]
    if not floors:
        return None
    best = max(floors)
    candidate = ".".join(map(str, best))
    return candidate if satisfies(candidate, constraint) else None


# -- the catalog ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plugin:
    name: str
    source: str
    version: str
    components: tuple[str, ...]

    @property
    def constraint(self) -> list[tuple[str, str]]:
        return parse_constraint(self.version, f"{CATALOG}: key '{self.name}.version'")

    def install_command(self) -> str:
        floor = lowest(self.constraint)
        return f"packer plugins install {self.source}" + (f" v{floor}" if floor else "")


def load_plugins(root: Path) -> list[Plugin]:
    path = root / CATALOG
    if not path.exists():
        return []
    data = read_toml(path, CATALOG)
    out: list[Plugin] = []
    for name, table in sorted(data.items()):
        if not isinstance(table, dict):
            raise KilnError(f"{CATALOG}: key {name!r} must be a table ([{name}] with source, version, components)")
        values, _ = check(table, _SPEC, CATALOG, prefix=f"{name}.")
        if not _SOURCE.match(values["source"]):
            raise KilnError(
                f"{CATALOG}: key '{name}.source': {values['source']!r} is not a plugin source like github.com/hashicorp/amazon"
            )
        plugin = Plugin(name, values["source"], values["version"], tuple(values["components"]))
        plugin.constraint  # noqa: B018 - a malformed constraint is said when the file is read
        out.append(plugin)
    return out


def needed(plugins: list[Plugin], template: str) -> list[Plugin]:
    """The plugins whose components the template uses (built-in ones such as shell need none)."""
    used = set(_BLOCK.findall(template))
    return [p for p in plugins if used & set(p.components)]


def block(plugins: list[Plugin]) -> str:
    lines = [
        f"# Generated by kiln from {CATALOG} for Packer 1.7 and newer; not part of any fingerprint.",
        "packer {",
        "  required_plugins {",
    ]
    for p in plugins:
        lines += [f"    {p.name} = {{", f'      source  = "{p.source}"', f'      version = "{p.version}"', "    }"]
    return "\n".join([*lines, "  }", "}", ""])


def set_key(plugins: list[Plugin]) -> str:
    text = "|".join(f"{p.name}={p.source}@{p.version}" for p in sorted(plugins, key=lambda p: p.name))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- what Packer has -----------------------------------------------------------------------------

_INSTALLED = re.compile(r"packer-plugin-([\w-]+?)_v?(\d+\.\d+\.\d+)[^/\s]*_x\d+\.\d+_")


def tool_env() -> dict[str, str]:
    """Packer's own settings (PACKER_PLUGIN_PATH, PACKER_CONFIG_DIR, HOME) without any
    credential: init and listing reach no cloud."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_")) and k != "PACKER_LOG"}
    env["CHECKPOINT_DISABLE"] = "1"
    return env


def parse_installed(output: str) -> dict[str, list[str]]:
    """`packer plugins installed`: one binary path per line, .../<source>/packer-plugin-<name>_v<version>_x5.0_<os>_<arch>."""
    out: dict[str, list[str]] = {}
    for line in output.splitlines():
        path = line.strip()
        match = _INSTALLED.search(Path(path).name)
        if not match or path.endswith("_SHA256SUM"):
            continue
        parts = Path(path).parent.parts
        source = "/".join(parts[-3:]) if len(parts) >= 3 else match.group(1)
        out.setdefault(source, []).append(match.group(2))
    for versions in out.values():
        versions.sort(key=_version, reverse=True)
    return out


def installed(packer: str) -> dict[str, list[str]] | None:
    """Installed plugin versions by source, newest first; None when this Packer cannot say
    (1.7 has no `packer plugins`)."""
    proc = subprocess.run(
        [packer, "plugins", "installed"],
        capture_output=True,
        text=True,
        check=False,
        env=tool_env(),
        stdin=subprocess.DEVNULL,
    )
    return parse_installed(proc.stdout) if proc.returncode == 0 else None


def in_use(plugins: list[Plugin], have: dict[str, list[str]] | None) -> dict[str, str]:
    """source -> the version Packer picks (the newest installed one the constraint admits),
    'missing', or '?' when the Packer cannot list its plugins."""
    out: dict[str, str] = {}
    for p in plugins:
        if have is None:
            out[p.source] = "?"
            continue
        ok = [v for v in have.get(p.source, []) if satisfies(v, p.constraint)]
        out[p.source] = ok[0] if ok else "missing"
    return out


def _telling(output: str) -> str:
    """Packer's failure as one phrase: which plugin, and the cause (its last error line)."""
    lines = [line.strip(" *\t") for line in output.splitlines() if line.strip()]
    errors = [x for x in lines if re.search(r"error|fail|unreachable|no such host|timeout|refused", x, re.I)]
    errors = [x for x in errors if not re.fullmatch(r"\d+ errors? occurred:", x)]
    if not errors:
        return lines[-1] if lines else "no output"
    first, last = errors[0].rstrip(":"), errors[-1]
    return first if first == last else f"{first}: {last}"


# -- packer init, once per plugin set ------------------------------------------------------------


class Plugins:
    """This run's plugin catalog and the sets `packer init` has made ready (one init per set
    per run, also across threads; a file lock keeps two kiln runs from installing at once)."""

    def __init__(self, root: Path, state: Path, say: Callable[[str], None]) -> None:
        self.root = root
        self.state = state
        self.say = say
        self._catalog: list[Plugin] | None = None
        self._ready: dict[str, dict[str, str]] = {}
        # A set that failed is said once per run, not retried by every build that needs it.
        self._failed: dict[str, KilnError] = {}
        self._lock = threading.Lock()
        self._set_locks: dict[str, threading.Lock] = {}

    @property
    def catalog(self) -> list[Plugin]:
        with self._lock:
            if self._catalog is None:
                self._catalog = load_plugins(self.root)
            return self._catalog

    def for_template(self, template: Path) -> list[Plugin]:
        text = template.read_text()
        known = {c for p in self.catalog for c in p.components}
        unknown = [b for b in re.findall(r'^\s*source\s+"([\w-]+)"', text, re.M) if b not in known]
        if unknown:
            raise KilnError(
                f"{CATALOG}: no plugin lists builder '{unknown[0]}' (used by {template.name}) in its components;"
                " add the plugin that provides it"
            )
        return needed(self.catalog, text)

    def ensure(self, plugins: list[Plugin]) -> dict[str, str]:
        """Run `packer init` for this set unless this run did already; source -> version used."""
        from tasks.packer_bin import packer_path, packer_version

        if not plugins:
            return {}
        key = set_key(plugins)
        with self._lock:
            if key in self._ready:
                return self._ready[key]
            lock = self._set_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._ready:
                    return self._ready[key]
                if key in self._failed:
                    raise KilnError(str(self._failed[key]))
            folder = self.state / "packer" / "init" / key
            folder.mkdir(parents=True, exist_ok=True)
            (folder / PLUGIN_FILE).write_text(block(plugins))
            log = folder / "init.log"
            packer = packer_path()
            with (self.state / "packer" / "init.lock").open("a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                proc = subprocess.run(
                    [packer, "init", str(folder)],
                    capture_output=True,
                    text=True,
                    check=False,
                    cwd=folder,
                    env=tool_env(),
                    stdin=subprocess.DEVNULL,
                )
                with log.open("a") as out:
                    out.write(f"# {packer} init {folder} (Packer {packer_version()})\n{proc.stdout}{proc.stderr}")
                have = installed(packer)
            versions = in_use(plugins, have)
            if proc.returncode != 0 or "missing" in versions.values():
                todo = [p for p in plugins if versions.get(p.source) in ("missing", "?")] or plugins
                commands = "; ".join(p.install_command() for p in todo)
                why = _telling(proc.stdout + proc.stderr) if proc.returncode != 0 else "it left some missing"
                failed = KilnError(
                    f"packer init: could not install the plugins kiln needs ({why}); without network, run on a"
                    f" machine that has it, or give each a downloaded binary with --path FILE: {commands}; see {log}"
                )
                with self._lock:
                    self._failed[key] = failed
                raise failed
            shown = ", ".join(f"{p.name} {versions[p.source]}" for p in plugins)
            self.say(f"packer {packer_version()}: plugins ready ({shown}; packer init, log {log})")
            with self._lock:
                self._ready[key] = versions
            return versions

    def prepare(self, rendered: Path, dest: Path) -> tuple[Path, dict[str, str]]:
        """The folder to hand Packer: the rendered template, unchanged, and the block for the
        plugins it uses; plus the plugin versions in use."""
        plugins = self.for_template(rendered)
        versions = self.ensure(plugins)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copyfile(rendered, dest / rendered.name)
        if plugins:
            (dest / PLUGIN_FILE).write_text(block(plugins))
        return dest, versions
