"""The lint's checks, which cost no cloud money: `packer validate` of a template rendered for
the AWS builder with its real provisioner blocks and a placeholder variable file, and
`ansible-playbook --syntax-check` of a playbook. A finding is a mistake in the user's files
(exit 3) in one line naming the file and line: for HCL the template line (packer/_templates/...),
mapped back from the rendered file's line through markers the lint's render puts on every
line, and the rendered file:line too.

Imported by `doit list`: Jinja2 and the subprocess work are imported inside the checks only.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.errors import KilnError

if TYPE_CHECKING:
    from tasks.build.packer_plugins import Plugins
    from tasks.catalog.load import Catalog, Customer

LINT_VERSION = "1"  # bump when what a lint check does changes
LINT_PROVIDER = "aws"  # the render with the real provisioner blocks (the sandbox's has none)
PLACEHOLDER_REGION = "us-east-1"

# -- names ---------------------------------------------------------------------------------------


def finding(message: str, log: str) -> KilnError:
    """A template or playbook mistake: the user's to fix, exit 3, with the tool's full output's log."""
    return KilnError(f"{message}; see {log}")


def template_check(role: str, distro: str, customer: str) -> str:
    """The doit task that validates role's template for distro (image tasks depend on it)."""
    return f"_lint:{role}/{distro}/{customer}"


def playbook_check(playbook: str) -> str:
    return f"_lint:playbook/{playbook}"


def lint_distros(catalog: Catalog, chosen: tuple[str, ...]) -> list[str]:
    """The command line's distros, plus the first distro (by name) of every Ansible mode they
    leave out, so both `ansible` and `ansible-local` are validated whatever the command line."""
    out = list(chosen)
    modes = {catalog.distros[d].ansible_mode for d in out}
    for name in sorted(catalog.distros):
        mode = catalog.distros[name].ansible_mode
        if mode not in modes:
            out.append(name)
            modes.add(mode)
    return out


def playbook_inputs(root: Path, playbook: str, walked: dict[Path, list[Path]] | None = None) -> list[Path]:
    """What a playbook's syntax depends on, without parsing it (`doit list` stays cheap): the
    playbook and everything beside it (its roles, collections, vars, tasks, requirements), but
    the other playbooks there: a superset of what tasks.inputs finds (what requirements.yml
    installs follows from the requirements files), short of a playbook it imports."""
    from tasks.inputs.statcache import walk_files

    path = root / playbook
    walked = {} if walked is None else walked
    if path.parent not in walked:  # playbooks share their folder: walk it once per command line
        walked[path.parent] = walk_files(path.parent)
    others = {f for f in walked[path.parent] if f.parent == path.parent and f.suffix in (".yml", ".yaml")}
    others -= {path, *(path.parent / r for r in ("requirements.yml", "requirements.yaml"))}
    return [path, *(f for f in walked[path.parent] if f != path and f not in others)]


# -- rendering with line marks -------------------------------------------------------------------

_START, _SEP, _END = "\x1e", "\x1d", "\x1f"
_MARK = re.compile("\x1e([^\x1d\x1f]*)\x1d([0-9]+)\x1f")


def _line_marks() -> type:
    """A Jinja2 extension that starts every line of template text with a mark naming its
    template file and line; the marks come out in the render and are taken off by split_marks."""
    import jinja2.ext
    import jinja2.lexer

    class LineMarks(jinja2.ext.Extension):
        def filter_stream(self, stream: Any) -> Iterator[Any]:
            where = stream.filename or stream.name or "?"
            for tok in stream:
                if tok.type == "data":
                    pieces = tok.value.split("\n")
                    value = "\n".join(f"{_START}{where}{_SEP}{tok.lineno + i}{_END}{p}" for i, p in enumerate(pieces))
                    yield jinja2.lexer.Token(tok.lineno, "data", value)
                else:
                    yield tok

    return LineMarks


def split_marks(marked: str) -> tuple[str, list[tuple[str, int]]]:
    """The render without marks, and for each of its lines the template file and line it came
    from (a line made only of a value's text gets the line before it)."""
    clean: list[str] = []
    where: list[tuple[str, int]] = []
    last = ("?", 0)
    for line in marked.split("\n"):
        marks = _MARK.findall(line)
        first = (marks[0][0], int(marks[0][1])) if marks else last
        if marks:
            last = (marks[-1][0], int(marks[-1][1]))
        clean.append(_MARK.sub("", line))
        where.append(first)
    return "\n".join(clean), where


def render_marked(catalog: Catalog, customer: Customer, role: str, distro: str) -> tuple[str, list[tuple[str, int]]]:
    from tasks.inputs.render import render_text

    r = catalog.roles[role]
    marked = render_text(
        catalog, r, catalog.distros[distro], customer, LINT_PROVIDER, r.playbook, extensions=[_line_marks()]
    )
    return split_marks(marked)


# -- packer validate -----------------------------------------------------------------------------


def _shown(root: Path, path: str | Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(root.resolve()))
    return str(path)


def _tool_env(state: Path) -> dict[str, str]:
    """No credentials and no metadata probe: the lint never reaches a cloud. The venv's
    ansible-playbook first on PATH (Packer's ansible provisioner asks it for its version).
    Packer's plugin settings and the user's Ansible settings are kept; Ansible writes only into
    the state folder, and still finds collections installed in the user's ~/.ansible."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_")) and k != "PACKER_LOG"}
    home = state / "lint" / "ansible"
    env.setdefault(
        "ANSIBLE_COLLECTIONS_PATH",
        os.pathsep.join(
            [str(home / "collections"), str(Path.home() / ".ansible" / "collections"), "/usr/share/ansible/collections"]
        ),
    )
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AWS_EC2_METADATA_DISABLED": "true",
            "CHECKPOINT_DISABLE": "1",
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
        }
    )
    return env


def _var_file(catalog: Catalog, role: str, target: Path) -> Path:
    """Placeholder values for the variables without defaults; real paths for the playbook (the
    provisioners check that it exists)."""
    from tasks.build.var_file import hcl_value

    playbook = catalog.roles[role].playbook
    verify = catalog.roles[role].verify_play(catalog.root)
    variables: dict[str, Any] = {
        "region": PLACEHOLDER_REGION,
        "source_ami": "ami-00000000000000000",
        "image_name": f"kiln-lint-{role}",
        "tags": {"built-by": "kiln"},
        "manifest_path": str(target.parent / f"{role}.manifest.json"),
        "ansible_dir": str(catalog.root / "provision" / "ansible"),
        "playbook_file": str(catalog.root / playbook) if playbook else "",
        "verify_file": str(catalog.root / verify) if verify else "",
        "packages_file": str(target.parent / f"{role}.packages.tsv"),
    }
    path = target.with_name(f"{role}.pkrvars.hcl")
    path.write_text("".join(f"{k} = {hcl_value(v)}\n" for k, v in sorted(variables.items())))
    return path


_PACKER_ON = re.compile(r"^\s+on (.+?) line ([0-9]+)")


def packer_problem(output: str) -> tuple[str, str | None, int | None, int]:
    """(summary, file, line, how many errors) from `packer validate`'s output."""
    blocks = re.split(r"^Error: ", output, flags=re.M)[1:]
    if not blocks:
        lines = [x.strip() for x in output.splitlines() if x.strip()]
        return (lines[0] if lines else "failed"), None, None, 1
    first = blocks[0].splitlines()
    summary, file, line = first[0].strip(), None, None
    detail: list[str] = []
    for text in first[1:]:
        on = _PACKER_ON.match(text)
        if on and file is None:
            file, line = on.group(1), int(on.group(2))
        elif text.strip() and not text.startswith("  ") and not text.rstrip().endswith("error(s) occurred:"):
            detail.append(text.strip().removeprefix("* "))
    if detail:
        summary = f"{summary.rstrip('.:')}: {' '.join(detail)}"
    # A provisioner's own error names the exact line inside the block: prefer it.
    inner = re.search(r"(\S+\.pkr\.hcl):([0-9]+),[0-9]+(?:-[0-9]+)?: ", summary)
    if inner:
        file, line = inner.group(1), int(inner.group(2))
        summary = summary.replace(inner.group(0), "")
    return summary.rstrip("."), file, line, len(blocks)


def validate_template(
    catalog: Catalog, customer: Customer, state: Path, plugins: Plugins, role: str, distro: str, target: Path
) -> None:
    from tasks.inputs.render import template_for
    from tasks.packer_bin import packer_path, packer_version, uses_plugins

    packer_version()  # a missing or too old Packer is said before anything is written
    root = catalog.root
    text, where = render_marked(catalog, customer, role, distro)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    var_file = _var_file(catalog, role, target)
    log = target.with_name(f"{role}.validate.log")
    log.unlink(missing_ok=True)
    # Validated by whatever Packer is installed: from 1.7 with the plugins block beside a copy.
    handed = plugins.prepare(target, target.with_name(f"{role}.packer"))[0] if uses_plugins() else target
    proc = subprocess.run(
        [packer_path(), "validate", f"-var-file={var_file}", str(handed)],
        capture_output=True,
        text=True,
        check=False,
        cwd=target.parent,
        env=_tool_env(state),
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    log.write_text(output)
    summary, file, line, count = packer_problem(output)
    more = f" (and {count - 1} more)" if count > 1 else ""
    rendered = _shown(root, target)
    _, template = template_for(catalog, catalog.roles[role], LINT_PROVIDER)
    if file is not None and line is not None and Path(file).name == target.name:
        source, source_line = where[line - 1] if 0 < line <= len(where) else (template, 0)
        at = f"{_shown(root, source)}:{source_line}" if source_line else _shown(root, source)
        raise finding(
            f"{at}: packer validate: {summary}{more} (rendered {rendered}:{line}; {distro}, provisioner {_mode(catalog, distro)})",
            _shown(root, log),
        )
    at = f"{_shown(root, file)}:{line}" if file and line else f"{rendered} (from {template})"
    raise finding(f"{at}: packer validate: {summary}{more}", _shown(root, log))


def _mode(catalog: Catalog, distro: str) -> str:
    return "ansible-local" if catalog.distros[distro].ansible_mode == "local" else "ansible"


# -- ansible-playbook --syntax-check -------------------------------------------------------------

_ANSIBLE_WHERE = (
    re.compile(r"The error appears to be in '(.+?)': line ([0-9]+), column ([0-9]+)"),
    re.compile(r"^Origin: (.+?):([0-9]+):([0-9]+)\s*$", re.M),
)
_ANSIBLE_MESSAGE = re.compile(r"^(?:ERROR!|\[ERROR\]:)\s*(.*)$", re.M)


def ansible_problem(root: Path, output: str) -> tuple[str, str | None]:
    """(message, 'file:line:column') from ansible-playbook's output."""
    found = _ANSIBLE_MESSAGE.search(output)
    lines = [x.strip() for x in output.splitlines() if x.strip()]
    message = (found.group(1).strip() if found else (lines[0] if lines else "failed")).rstrip(".")
    # Said as kiln says them everywhere else: what is wrong, and where it was looked for.
    message = re.sub(r"^YAML parsing failed:?", "YAML error:", message)
    role = re.search(r"the role '([^']+)' was not found", message)
    if role:
        message = f"role '{role.group(1)}' not found: there is no provision/ansible/roles/{role.group(1)}/"
    for pattern in _ANSIBLE_WHERE:
        at = pattern.search(output)
        if at:
            return message, f"{_shown(root, at.group(1))}:{at.group(2)}:{at.group(3)}"
    return message, None


def syntax_command(
    catalog: Catalog, state: Path, playbook: str, ansible_env: dict[str, str]
) -> tuple[list[str], dict[str, str], Path]:
    """ansible-playbook --syntax-check of one playbook: its command, environment and folder."""
    ansible = Path(sys.executable).parent / "ansible-playbook"
    if not ansible.exists():
        raise KilnError(f"ansible-playbook: not found at {ansible}; install kiln's dependencies (pip install -e .)")
    env = _tool_env(state)
    Path(env["ANSIBLE_LOCAL_TEMP"]).mkdir(parents=True, exist_ok=True)
    path = catalog.root / playbook
    env.update(ansible_env)  # roles, collections and ansible.cfg as every play finds them
    return [str(ansible), "--syntax-check", "-i", "localhost,", str(path)], env, path.parent


def syntax_result(catalog: Catalog, state: Path, playbook: str, code: int, output: str, checked: str) -> None:
    """The check passed (its stamp written: checked is inputs_state from before it ran), or the
    finding, in one line."""
    if code == 0:
        mark_passed(state, playbook, checked)
        return
    logs = state / "lint" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / (playbook.replace("/", "_") + ".syntax.log")
    log.write_text(output)
    message, at = ansible_problem(catalog.root, output)
    raise finding(f"{at or playbook}: ansible-playbook --syntax-check: {message}", _shown(catalog.root, log))


def syntax_check(catalog: Catalog, state: Path, playbook: str, ansible_env: dict[str, str]) -> None:
    cmd, env, cwd = syntax_command(catalog, state, playbook, ansible_env)
    checked = inputs_state(catalog.root, playbook)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    syntax_result(catalog, state, playbook, proc.returncode, proc.stdout + proc.stderr, checked)


# -- the last passing check ----------------------------------------------------------------------


def _stamp(state: Path, playbook: str) -> Path:
    return state / "lint" / "passed" / playbook.replace("/", "_")


def inputs_state(root: Path, playbook: str) -> str:
    """What the playbook's syntax depends on, as their stats (no file is read)."""
    import hashlib

    digest = hashlib.sha256(LINT_VERSION.encode())
    for path in sorted(playbook_inputs(root, playbook)):
        with contextlib.suppress(OSError):
            st = path.stat()
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return digest.hexdigest()


def passed_as_is(root: Path, state: Path, playbook: str) -> bool:
    """Whether the playbook passed its check with its inputs as they are now."""
    try:
        return _stamp(state, playbook).read_text() == inputs_state(root, playbook)
    except OSError:
        return False


def mark_passed(state: Path, playbook: str, checked: str) -> None:
    stamp = _stamp(state, playbook)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(checked)
    tmp.replace(stamp)
