"""Content hashes of files, remembered by (size, mtime_ns, inode) like git's index.

A file whose stat is unchanged is not read again. A file modified within the last two seconds
is hashed but not remembered: its mtime may not yet tell a later write apart ("racy" entries).
The cache is one marshal file, replaced atomically; losing it only costs a slower run.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import threading
import time
from pathlib import Path

_RACY_NS = 2_000_000_000
_FORMAT = 1
Entry = tuple[int, int, int, str]


def sha256_file(path: Path | str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class StatCache:
    def __init__(self, cache_path: Path) -> None:
        self._path = cache_path
        self._lock = threading.Lock()
        self._known: dict[str, Entry] | None = None
        self._new: dict[str, Entry] = {}

    def _load(self) -> dict[str, Entry]:
        if self._known is None:
            known: dict[str, Entry] = {}
            try:
                data = marshal.loads(self._path.read_bytes())  # load(fh) reads in small pieces: 5x slower
                if isinstance(data, tuple) and len(data) == 2 and data[0] == _FORMAT and isinstance(data[1], dict):
                    known = data[1]
            except (OSError, EOFError, ValueError, TypeError):
                known = {}  # a damaged or missing cache is only a slower run
            self._known = known
        return self._known

    def hash(self, path: Path) -> str:
        key = str(path)
        known = self._known if self._known is not None else self._load()
        entry = known.get(key) or self._new.get(key)
        if entry is not None:
            st = os.stat(key)
            if entry[0] == st.st_size and entry[1] == st.st_mtime_ns and entry[2] == st.st_ino:
                return entry[3]
        # Read and stat through one open file: a file never seen costs what hashing it costs.
        with open(key, "rb") as fh:
            st = os.fstat(fh.fileno())
            big = st.st_size > 1 << 23  # stream large inputs rather than hold them in memory
            digest = (hashlib.file_digest(fh, "sha256") if big else hashlib.sha256(fh.read())).hexdigest()
        if time.time_ns() - st.st_mtime_ns > _RACY_NS:
            with self._lock:
                self._new[key] = (st.st_size, st.st_mtime_ns, st.st_ino, digest)
        return digest

    def save(self) -> None:
        with self._lock:
            if not self._new:
                return
            new, self._new = self._new, {}
            merged = self._load()
            merged.update(new)
            data = marshal.dumps((_FORMAT, merged))
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(self._path)
        except OSError:
            tmp.unlink(missing_ok=True)  # the cache is an optimisation; never fail a run for it


def walk_files(path: Path) -> list[Path]:
    """Every regular file below path, sorted, skipping caches that are not content."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".git"))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".retry")))
    return out
