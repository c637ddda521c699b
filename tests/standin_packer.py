"""A stand-in for current Packer (1.10 and later bundle no plugins), at the process boundary.

Only Debian's Packer 1.6.6 can be installed on these machines. The stand-in is an executable
`packer` put first on PATH that behaves as a current Packer does where kiln can tell:

- `packer version` prints `Packer v<version>`;
- `packer init <path>` installs (as empty files, in PACKER_PLUGIN_PATH, with Packer's naming)
  the lowest version each `required_plugins` entry admits, unless an installed one satisfies it;
  offline (STANDIN_PACKER_OFFLINE=1) it fails as Packer does without network;
- `packer plugins installed` lists those files (Packer 1.8 and later);
- `packer build` and `packer validate` refuse, as current Packer does, a template whose builders
  or provisioners come from a plugin that is not declared or not installed; otherwise they hand
  a copy without the `required_plugins` block to the real 1.6.6, so the real builder runs
  against the sandbox's moto;
- `packer fmt` is the real one's.

Every call is recorded (argv, the *.pkr.hcl files it was handed, the var file) in
STANDIN_PACKER_LOG, one JSON object per line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REAL_PACKER = "/usr/bin/packer"

SCRIPT = r"""#!{python}
import json, os, re, sys, tempfile, time
REAL = {real!r}
VERSION = {version!r}
LOG = os.environ["STANDIN_PACKER_LOG"]
args = sys.argv[1:]
plugins = os.environ.get("PACKER_PLUGIN_PATH") or os.path.expanduser("~/.config/packer/plugins")
PROVIDES = {{"amazon": "github.com/hashicorp/amazon", "azure": "github.com/hashicorp/azure",
            "ansible": "github.com/hashicorp/ansible"}}


def vt(text):
    return tuple(int(x) for x in (text.split(".") + ["0", "0"])[:3])


def files_of(path):
    if os.path.isdir(path):
        return {{n: open(os.path.join(path, n)).read() for n in sorted(os.listdir(path)) if n.endswith(".pkr.hcl")}}
    return {{os.path.basename(path): open(path).read()}}


def record(**extra):
    with open(LOG, "a") as fh:
        fh.write(json.dumps({{"argv": args, "cwd": os.getcwd(), **extra}}) + "\n")


def required(files):
    out = {{}}
    for text in files.values():
        for name, body in re.findall(r"(\w+)\s*=\s*\{{([^{{}}]*)\}}", text):
            source = re.search(r'source\s*=\s*"([^"]+)"', body)
            version = re.search(r'version\s*=\s*"([^"]+)"', body)
            if source and version:
                out[source.group(1)] = (name, version.group(1))
    return out


def admits(version, constraint):
    for part in constraint.split(","):
        op, want = re.match(r"\s*(~>|>=|<=|!=|=|>|<)?\s*([\d.]+)", part).groups()
        have, want_t = vt(version), vt(want)
        op = op or "="
        if op == "~>":
            upper = (want_t[0] + 1, 0, 0) if want.count(".") <= 1 else (want_t[0], want_t[1] + 1, 0)
            ok = want_t <= have < upper
        else:
            ok = {{"=": have == want_t, "!=": have != want_t, ">": have > want_t, ">=": have >= want_t,
                  "<": have < want_t, "<=": have <= want_t}}[op]
        if not ok:
            return False
    return True


def installed():
    out = []
    for root, _, names in os.walk(plugins):
        for n in names:
            if n.startswith("packer-plugin-") and not n.endswith("_SHA256SUM"):
                out.append(os.path.join(root, n))
    return sorted(out)


def versions_of(source):
    found = []
    for path in installed():
        if os.path.dirname(path).endswith(source):
            found.append(re.search(r"_v([\d.]+)_x", os.path.basename(path)).group(1))
    return found


def used(files):
    text = "\n".join(files.values())
    kinds = re.findall(r'^\s*(source|provisioner)\s+"([\w-]+)"', text, re.M)
    out = []
    for kind, name in kinds:
        plugin = name.split("-")[0]
        if plugin in PROVIDES and (kind == "source" or name.startswith("ansible")):
            out.append((kind, name, PROVIDES[plugin]))
    return out


def say_error(text):
    if "-machine-readable" in args:
        print(f"{{int(time.time())}},,ui,error," + text.replace(",", "%!(PACKER_COMMA)").replace("\n", "\\n"))
    else:
        print(text, file=sys.stderr)


def strip_required(text):
    start = text.find("required_plugins")
    if start < 0:
        return text
    depth, i = 0, text.index("{{", start)
    while True:
        depth += {{"{{": 1, "}}": -1}}.get(text[i], 0)
        i += 1
        if depth == 0:
            return text[:start] + text[i:]


if args[:1] == ["version"]:
    print(f"Packer v{{VERSION}}")
    sys.exit(0)
if args[:2] == ["plugins", "installed"]:
    record()
    if vt(VERSION) < (1, 8, 0):
        print("Usage: packer [--version] [--help] <command> [<args>]", file=sys.stderr)
        sys.exit(127)
    print("\n".join(installed()))
    sys.exit(0)
if args[:1] == ["init"]:
    files = files_of(args[-1])
    record(files=files)
    for source, (name, constraint) in sorted(required(files).items()):
        if any(admits(v, constraint) for v in versions_of(source)):
            continue
        if os.environ.get("STANDIN_PACKER_OFFLINE"):
            print(f'Failed getting the "{{source}}" plugin:', file=sys.stderr)
            print("1 error occurred:", file=sys.stderr)
            print(f'\t* could not get the release list: dial tcp: lookup github.invalid: no such host', file=sys.stderr)
            sys.exit(1)
        floors = [vt(v) for op, v in re.findall(r"(~>|>=|=)\s*([\d.]+)", constraint)]
        version = ".".join(map(str, max(floors)))
        folder = os.path.join(plugins, source)
        os.makedirs(folder, exist_ok=True)
        binary = os.path.join(folder, f"packer-plugin-{{name}}_v{{version}}_x5.0_linux_amd64")
        open(binary, "w").write("stand-in plugin\n")
        open(binary + "_SHA256SUM", "w").write("0" * 64 + "\n")
        print(f'Installed plugin {{source}} v{{version}} in "{{binary}}"')
    sys.exit(0)
if args[:1] in (["build"], ["validate"]):
    target = args[-1]
    files = files_of(target)
    var_file = next((a.split("=", 1)[1] for a in args if a.startswith("-var-file=")), None)
    record(files=files, var_file=open(var_file).read() if var_file else None)
    declared = required(files)
    for kind, name, source in used(files):
        if source not in declared:
            say_error(f"Error: Unknown {{'source type' if kind == 'source' else 'provisioner'}} {{name}}\n\n"
                      f"The {{kind}} {{name}} is unknown by Packer, and is likely part of a plugin that is not"
                      " installed.\nYou may find the needed plugin along with installation instructions documented"
                      " on the Packer integrations page.")
            sys.exit(1)
        if not any(admits(v, declared[source][1]) for v in versions_of(source)):
            say_error(f"Error: Missing plugins\n\nThe following plugins are required, but not installed:\n\n"
                      f"{{source}} {{declared[source][1]}}\n\nDid you run packer init for this configuration ?")
            sys.exit(1)
    copy = tempfile.mkdtemp(prefix="standin-", dir=os.path.dirname(LOG))
    for n, text in files.items():
        open(os.path.join(copy, n), "w").write(strip_required(text))
    handed = copy if os.path.isdir(target) else os.path.join(copy, os.path.basename(target))
    os.execv(REAL, [REAL, *args[:-1], handed])
os.execv(REAL, [REAL, *args])
"""


def standin(tmp: Path, version: str = "1.11.2", offline: bool = False) -> dict[str, str]:
    """Install the stand-in under tmp; the environment that puts it first on PATH."""
    bin_dir = tmp / "standin-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "packer"
    script.write_text(SCRIPT.format(python=sys.executable, real=REAL_PACKER, version=version))
    script.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "STANDIN_PACKER_LOG": str(tmp / "standin-packer.jsonl"),
        # The user's plugin folder, here a temporary one.
        "PACKER_PLUGIN_PATH": str(tmp / "plugins"),
    }
    if offline:
        env["STANDIN_PACKER_OFFLINE"] = "1"
    return env


def calls(env: dict[str, str]) -> list[dict[str, object]]:
    path = Path(env["STANDIN_PACKER_LOG"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
