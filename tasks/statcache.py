"""Content hashes of files, remembered by (size, mtime_ns, inode) like git's index.

A file whose stat is unchanged is not read again. A file modified within the last two seconds
is hashed but not remembered: its mtime may not yet tell a later write apart ("racy" entries).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

_RACY_NS = 2_000_000_000


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class StatCache:
    def __init__(self, db_path: Path) -> None:
        self._path = db_path
        self._lock = threading.Lock()
        self._known: dict[str, tuple[int, int, int, str]] | None = None
        self._new: dict[str, tuple[int, int, int, str]] = {}

    def _load(self) -> dict[str, tuple[int, int, int, str]]:
        if self._known is None:
            self._known = {}
            if self._path.exists():
                try:
                    with sqlite3.connect(self._path) as con:
                        rows = con.execute("SELECT path, size, mtime_ns, ino, sha256 FROM files").fetchall()
                    self._known = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
                except sqlite3.DatabaseError:
                    self._known = {}  # a damaged cache is only a slower run
        return self._known

    def hash(self, path: Path) -> str:
        st = path.stat()
        key = str(path)
        with self._lock:
            known = self._load().get(key) or self._new.get(key)
        if known and known[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            return known[3]
        digest = sha256_file(path)
        if time.time_ns() - st.st_mtime_ns > _RACY_NS:
            with self._lock:
                self._new[key] = (st.st_size, st.st_mtime_ns, st.st_ino, digest)
        return digest

    def save(self) -> None:
        with self._lock:
            if not self._new:
                return
            new, self._new = self._new, {}
            self._load().update(new)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with sqlite3.connect(self._path, timeout=30) as con:
                con.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER, sha256 TEXT)"
                )
                con.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", [(k, *v) for k, v in new.items()]
                )
        except sqlite3.Error:
            pass  # the cache is an optimisation; never fail a run for it


def walk_files(path: Path) -> list[Path]:
    """Every regular file below path, sorted, skipping caches that are not content."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".git"))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".retry")))
    return out
