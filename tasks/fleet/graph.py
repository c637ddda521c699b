"""`doit graph [format=dot|svg|png]`: the catalog's lineage as a picture. Each role per distro and
region is a node with its image, status (current, out of date, revoked, missing), verification,
origin and channels; an arrow goes from a parent to the role built on it. `dot` prints Graphviz
text on stdout; svg and png are drawn by Debian's Graphviz into the state folder, whose path is
printed. From the records only: no cloud call."""

from __future__ import annotations

import shutil
import subprocess

from tasks.errors import KilnError
from tasks.fleet.context import Context
from tasks.fleet.inventory import Entry, inventory, scope

FORMATS = ("dot", "svg", "png")
# Status -> fill colour: what needs attention stands out.
COLOURS = {
    "up to date": "#c8e6c9",
    "stale": "#ffe0b2",
    "revoked": "#ffcdd2",
    "parent revoked": "#ffcdd2",
    "missing": "#eeeeee",
}
SHOWN = {"up to date": "current", "stale": "out of date"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_text(run: Context, entries: list[Entry]) -> str:
    lines = [
        f"digraph {_quote('kiln ' + run.options.customer + ' ' + run.options.provider)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    ]
    places = sorted({(e.distro, e.region) for e in entries})
    for n, (distro, region) in enumerate(places):
        lines.append(f"  subgraph cluster_{n} {{")
        lines.append(f"    label={_quote(f'{distro} / {region}')};")
        here = [e for e in entries if (e.distro, e.region) == (distro, region)]
        for e in here:
            node = _quote(f"{e.role}@{distro}@{region}")
            status = SHOWN.get(e.status, e.status)
            parts = [e.role, e.image_id, f"{status} ({e.origin})" if e.origin != "-" else status]
            if e.verified != "-":
                parts.append(f"verify: {e.verified}")
            if e.channels:
                parts.append("channels: " + ", ".join(e.channels))
            style = '"rounded,filled,dashed"' if e.verified in ("unverified", "failed") else '"rounded,filled"'
            colour = COLOURS.get(e.status, "#ffffff")
            lines.append(
                f"    {node} [label={_quote(chr(10).join(parts))}, fillcolor={_quote(colour)}, style={style}];"
            )
        for e in here:
            parent = run.catalog.roles[e.role].parent
            if parent is not None:
                lines.append(f"    {_quote(f'{parent}@{distro}@{region}')} -> {_quote(f'{e.role}@{distro}@{region}')};")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_command(run: Context, fmt: str) -> str:
    if fmt not in FORMATS:
        raise KilnError(f"variable format: {fmt!r} is not valid for doit graph; valid: {', '.join(FORMATS)}")
    run.offline = True
    text = dot_text(run, inventory(run, *scope(run)))
    if fmt == "dot":
        return text
    dot = shutil.which("dot")
    if dot is None:
        raise KilnError("doit graph: Graphviz's dot is not installed; run bootstrap.sh or apt-get install graphviz")
    out = run.state / "graph" / f"{run.options.customer}-{run.options.provider}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=text, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KilnError(f"doit graph: dot failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return f"{out}\n"
