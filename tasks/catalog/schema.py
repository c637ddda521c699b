"""TOML files read against a small schema: unknown, missing and mistyped keys are one-line errors.

Every value keeps its provenance (file and key), so an error, `why` and the manifest can say
which file set it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import KilnError, valid_list


@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    # Content settings decide what an image holds and go into its fingerprint; placement
    # (network ids, regions) and credentials never do.
    content: bool = False
    # A nested table with its own schema.
    table: Mapping[str, Field] | None = None
    # A table whose keys are free (tags, variables); values must be of `type`.
    free_table: bool = False


@dataclass(frozen=True)
class Loaded:
    """A checked TOML table: values plus where each came from."""

    path: str
    values: dict[str, Any]
    provenance: dict[str, str] = field(default_factory=dict)
    content_keys: frozenset[str] = frozenset()

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def content(self) -> dict[str, Any]:
        return {k: self.values[k] for k in sorted(self.content_keys) if self.values.get(k) is not None}


TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table"}


def _type_name(t: type | tuple[type, ...]) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join(TYPE_NAMES.get(x, x.__name__) for x in types)


def read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise KilnError(f"{shown}: file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise KilnError(f"{shown}: malformed TOML: {err}") from None
    except OSError as err:
        raise KilnError(f"{shown}: cannot read: {err.strerror}") from None


def check(
    data: Mapping[str, Any], schema: Mapping[str, Field], shown: str, prefix: str = ""
) -> tuple[dict[str, Any], set[str]]:
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise KilnError(
            f"{shown}: unknown key '{prefix}{unknown[0]}'; valid keys: {valid_list(prefix + k for k in schema)}"
        )
    values: dict[str, Any] = {}
    content: set[str] = set()
    for key, spec in schema.items():
        name = prefix + key
        if key not in data:
            if spec.required:
                raise KilnError(f"{shown}: missing required key '{name}' ({_type_name(spec.type)})")
            values[key] = spec.default
        else:
            raw = data[key]
            # bool is an int in Python; a TOML `true` must not pass as a number.
            if not isinstance(raw, spec.type) or (isinstance(raw, bool) and spec.type is int):
                raise KilnError(
                    f"{shown}: key '{name}' must be {_type_name(spec.type)}, not {type(raw).__name__} {raw!r}"
                )
            value: Any = raw
            if spec.table is not None:
                value, _ = check(value, spec.table, shown, prefix=f"{name}.")
            elif spec.free_table:
                for k, v in value.items():
                    if not isinstance(v, (str, int, bool)):
                        raise KilnError(f"{shown}: key '{name}.{k}' must be a string, number or boolean")
                value = {k: str(v) for k, v in value.items()}
            elif spec.type is list:
                for item in value:
                    if not isinstance(item, str):
                        raise KilnError(f"{shown}: key '{name}' must be a list of strings")
            values[key] = value
        if spec.content:
            content.add(key)
    return values, content


def load(path: Path, schema: Mapping[str, Field], shown: str) -> Loaded:
    data = read_toml(path, shown)
    values, content = check(data, schema, shown)
    provenance = {k: f"{shown}:{k}" for k in data}
    return Loaded(shown, values, provenance, frozenset(content))
