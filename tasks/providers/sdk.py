"""A boto3 session whose service models load from a marshal cache in the state folder.

Making the first EC2 client parses megabytes of JSON models and lists botocore's data folders:
about a tenth of a second that every run pays before its first cloud call. The cache keeps the
parsed models keyed by file, size and mtime (a botocore upgrade misses it and refills it).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import marshal
import os
from pathlib import Path
from typing import Any


def _read(path: Path) -> Any:
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None


def _write(path: Path, data: Any) -> None:
    # A cache that cannot be written (read-only or full disk) only costs time.
    with contextlib.suppress(OSError, ValueError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(data))
        tmp.replace(path)


def _key(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def session(cache: Path, access_key: str | None = None, secret_key: str | None = None) -> Any:
    import boto3
    import botocore
    from botocore.loaders import JSONFileLoader

    class CachedJsonLoader(JSONFileLoader):
        def load_file(self, file_path: str) -> Any:
            for ext in (".json", ".json.gz"):
                try:
                    st = os.stat(file_path + ext)
                except OSError:
                    continue
                cached = cache / f"{_key(file_path + ext, st.st_size, st.st_mtime_ns)}.marshal"
                data = _read(cached)
                if data is None:
                    opener: Any = gzip.open if ext == ".json.gz" else open
                    with opener(file_path + ext, "rb") as fh:
                        # Plain dicts keep their order; botocore's OrderedDicts cannot be marshalled.
                        data = json.loads(fh.read().decode("utf-8"))
                    _write(cached, data)
                return data
            return None

    s = boto3.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    loader = s._session.get_component("data_loader")
    loader.file_loader = CachedJsonLoader()
    listed = loader.list_available_services

    def list_available_services(type_name: str) -> list[str]:
        # Walking every service folder is a thousand stats; the answer changes with botocore only.
        cached = cache / f"services-{_key(botocore.__version__, *loader.search_paths, type_name)}.marshal"
        names = _read(cached)
        if not isinstance(names, list):
            names = list(listed(type_name))
            _write(cached, names)
        return names

    loader.list_available_services = list_available_services
    return s
