"""The house rules of ARCHITECTURE.md, read from the source: stages import only downwards, no
import cycle, no module over 400 lines, and only the cli knows the Session."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tasks"
# Lowest first: a module may import its own stage and the stages before it, never one after.
STAGES = (
    "errors",
    "models",
    "file_lock",
    "packer_bin",
    "catalog",
    "providers",
    "inputs",
    "records",
    "decide",
    "build",
    "checks",
    "fleet",
    "cli",
)
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in TASKS.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every tasks module this one imports, at the top or inside a function, typing-only included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for target in (node.module, *(f"{node.module}.{a.name}" for a in node.names)):
                if target in known and target != name:
                    found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
    return found


def stage(name: str) -> int:
    part = name.split(".")[1] if "." in name else ""
    return STAGES.index(part) if part in STAGES else -1


def test_every_module_belongs_to_a_stage() -> None:
    strays = [m for m in modules() if m != "tasks" and stage(m) < 0]
    assert not strays, f"modules outside the stages of ARCHITECTURE.md: {strays}"


def test_stages_import_only_downwards() -> None:
    known = modules()
    upward = [
        f"{m} imports {t}"
        for m, p in known.items()
        for t in sorted(imports(m, p, known))
        if t != "tasks" and stage(t) > stage(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    known = modules()
    graph = {m: imports(m, p, known) - {"tasks"} for m, p in known.items()}
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(m) :], m]))
        if m in done:
            return
        for t in sorted(graph[m]):
            visit(t, [*path, m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])


def test_no_module_is_too_long() -> None:
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_only_the_cli_knows_the_session() -> None:
    known = modules()
    users = sorted(m for m, p in known.items() if "tasks.cli.session" in imports(m, p, known))
    assert users and all(m.startswith("tasks.cli.") for m in users), users
