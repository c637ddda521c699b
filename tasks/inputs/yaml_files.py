"""YAML read once per content: a run that asks for the same file for 144 images parses it once,
and a file with the same bytes in two places is parsed once too."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from tasks.errors import KilnError

_parsed: dict[str, Any] = {}
_texts: dict[tuple[str, int, int], tuple[str, str]] = {}
_lock = threading.Lock()
PARSES = [0]  # how many times YAML was really parsed in this process (the benchmark reads it)


def read_text(path: Path) -> tuple[str, str]:
    """(text, sha256) of a file, remembered for this process by its stat."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _texts.get(key)
    if hit is not None:
        return hit
    data = path.read_bytes()
    value = (data.decode("utf-8", "replace"), hashlib.sha256(data).hexdigest())
    with _lock:
        _texts[key] = value
    return value


_LOADER: list[Any] = []


def _loader() -> Any:
    """A safe loader (libyaml's when present) that reads Ansible's own tags (!vault, !unsafe)
    as the plain values under them: kiln needs the structure, not the secrets."""
    import yaml

    if not _LOADER:
        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class AnsibleYaml(base):  # type: ignore[misc, valid-type]
            pass

        def plain(loader: Any, suffix: str, node: Any) -> Any:
            if isinstance(node, yaml.MappingNode):
                return loader.construct_mapping(node)
            if isinstance(node, yaml.SequenceNode):
                return loader.construct_sequence(node)
            return loader.construct_scalar(node)

        AnsibleYaml.add_multi_constructor("!", plain)
        _LOADER.append(AnsibleYaml)
    return _LOADER[0]


def load_yaml(path: Path, shown: str) -> Any:
    """The parsed file; a syntax error is one line naming the file and line."""
    import yaml  # lazily: `doit list` does not pay for it

    try:
        text, digest = read_text(path)
    except FileNotFoundError:
        raise KilnError(f"{shown}: file not found") from None
    with _lock:
        if digest in _parsed:
            return _parsed[digest]
    try:
        data = yaml.load(text, Loader=_loader())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise KilnError(f"{shown}{where}: YAML error: {err.problem}") from None
    except yaml.YAMLError as err:
        raise KilnError(f"{shown}: YAML error: {err}") from None
    with _lock:
        PARSES[0] += 1
        _parsed[digest] = data
    return data
