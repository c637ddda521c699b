"""The results database: every image kiln built, adopted or copied, and every build it ran.

SQLite in WAL mode; writers also take a file lock, so two kiln runs at once lose nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.errors import KilnError

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL, account TEXT NOT NULL, region TEXT NOT NULL,
    customer TEXT NOT NULL, distro TEXT NOT NULL, role TEXT NOT NULL,
    fingerprint TEXT NOT NULL, image_id TEXT NOT NULL, image_name TEXT,
    parent_image TEXT, source_image TEXT,
    origin TEXT NOT NULL,            -- built | adopted | copied
    state TEXT NOT NULL DEFAULT 'available',   -- available | gone | revoked
    created_at TEXT NOT NULL, packer_version TEXT, git_commit TEXT,
    playbook_override TEXT,
    revoked_reason TEXT,
    manifest TEXT NOT NULL,
    UNIQUE (provider, account, region, image_id)
);
CREATE INDEX IF NOT EXISTS images_fp ON images (provider, account, region, fingerprint);
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL, region TEXT NOT NULL, customer TEXT NOT NULL,
    distro TEXT NOT NULL, role TEXT NOT NULL, fingerprint TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL,            -- running | ok | failed | interrupted
    log_path TEXT, image_id TEXT, message TEXT,
    missed_inputs TEXT               -- JSON list: files the play read that were not inputs
);
-- With whom kiln last shared each image (tasks/fleet/sharing.py): a run whose wanted set is the same
-- makes no sharing call at all.
CREATE TABLE IF NOT EXISTS shares (
    provider TEXT NOT NULL, account TEXT NOT NULL, region TEXT NOT NULL, image_id TEXT NOT NULL,
    shared TEXT NOT NULL,            -- JSON: {"accounts": [...], "organizations": [...], "ous": [...]}
    at TEXT NOT NULL,
    PRIMARY KEY (provider, account, region, image_id)
);
-- Every channel assignment (tasks/records/channels.py): the newest row of a channel is where it
-- points; previous_image is where it pointed before (what a rollback returns to).
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL, customer TEXT NOT NULL, distro TEXT NOT NULL, region TEXT NOT NULL,
    role TEXT NOT NULL, channel TEXT NOT NULL, image_id TEXT NOT NULL, previous_image TEXT,
    who TEXT NOT NULL, at TEXT NOT NULL, parameter TEXT
);
CREATE INDEX IF NOT EXISTS channels_place ON channels (provider, customer, role, channel);
-- The package inventory of each image (tasks/records/packages.py): its CycloneDX file.
CREATE TABLE IF NOT EXISTS packages (
    provider TEXT NOT NULL, image_id TEXT NOT NULL, path TEXT NOT NULL, count INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (provider, image_id)
);
CREATE TABLE IF NOT EXISTS confirmations (
    provider TEXT NOT NULL, account TEXT NOT NULL, region TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (provider, account, region)
);
"""


# Columns added after the first schema, on new and old databases alike: what a build ran on
# and what it cost, the tools it used, and the size of each image.
ADDED_COLUMNS = (
    ("builds", "instance_type", "TEXT"),  # the type, or the spot candidates, it ran on
    ("builds", "capacity", "TEXT"),  # on-demand | spot | on-demand (no spot capacity)
    ("builds", "seconds", "REAL"),  # Packer's wall time, every attempt included
    ("builds", "packer", "TEXT"),  # Packer's version
    ("builds", "plugins", "TEXT"),  # JSON: plugin source -> version (Packer 1.7 and newer)
    # Who runs it, written with the row before anything is spent: a row still `running` whose
    # holder is gone is a killed build (tasks/build/dead_builds.py).
    ("builds", "host", "TEXT"),
    ("builds", "pid", "INTEGER"),
    ("images", "volume_gb", "INTEGER"),  # GiB of its volumes: what its snapshots hold at most
    ("images", "snapshots", "INTEGER"),
    # The role's verify play on this image: passed | unverified (no machine ran it) | NULL (none)
    ("images", "verified", "TEXT"),
)
BUILD_DETAILS = frozenset(c for table, c, _ in ADDED_COLUMNS if table == "builds")


def add_columns(con: sqlite3.Connection) -> None:
    have: dict[str, set[str]] = {}
    for table, column, kind in ADDED_COLUMNS:
        if table not in have:
            have[table] = {r["name"] for r in con.execute(f"PRAGMA table_info({table})")}
        if column not in have[table]:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ImageRow:
    provider: str
    account: str
    region: str
    customer: str
    distro: str
    role: str
    fingerprint: str
    image_id: str
    image_name: str
    parent_image: str | None
    source_image: str | None
    origin: str
    manifest: dict[str, Any]
    packer_version: str | None = None
    git_commit: str | None = None
    playbook_override: str | None = None
    created_at: str = ""
    state: str = "available"
    revoked_reason: str | None = None
    verified: str | None = None


class Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            con.row_factory = sqlite3.Row
            if not self._ready:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)
                columns = {r["name"] for r in con.execute("PRAGMA table_info(images)")}
                if "revoked_reason" not in columns:  # a database from before revocation
                    con.execute("ALTER TABLE images ADD COLUMN revoked_reason TEXT")
                build_columns = {r["name"] for r in con.execute("PRAGMA table_info(builds)")}
                if "missed_inputs" not in build_columns:  # a database from before the read audit
                    con.execute("ALTER TABLE builds ADD COLUMN missed_inputs TEXT")
                add_columns(con)
                self._ready = True
            return con
        except sqlite3.Error as err:
            raise KilnError(f"{self.path}: cannot open the results database: {err}") from None
        except OSError as err:
            raise KilnError(f"{self.path.parent}: cannot write kiln's state folder: {err.strerror}") from None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the file lock (other processes) and a thread lock (-P thread)."""
        with self._thread_lock:
            try:
                lock = self._lock_path.open("a")
            except OSError as err:
                raise KilnError(f"{self._lock_path}: cannot lock the results database: {err.strerror}") from None
            with lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                con = self._connect()
                try:
                    con.execute("BEGIN IMMEDIATE")
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
                finally:
                    con.close()

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if not self.path.exists():
            return []
        con = self._connect()
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    # -- images -----------------------------------------------------------------------------

    def record_image(self, row: ImageRow, con: sqlite3.Connection | None = None) -> None:
        values = (
            row.provider,
            row.account,
            row.region,
            row.customer,
            row.distro,
            row.role,
            row.fingerprint,
            row.image_id,
            row.image_name,
            row.parent_image,
            row.source_image,
            row.origin,
            row.state,
            row.created_at or now(),
            row.packer_version,
            row.git_commit,
            row.playbook_override,
            row.revoked_reason,
            json.dumps(row.manifest, sort_keys=True),
            row.verified,
        )
        sql = (
            "INSERT INTO images (provider, account, region, customer, distro, role, fingerprint,"
            " image_id, image_name, parent_image, source_image, origin, state, created_at,"
            " packer_version, git_commit, playbook_override, revoked_reason, manifest, verified)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (provider, account, region, image_id) DO UPDATE SET state = excluded.state,"
            " fingerprint = excluded.fingerprint, revoked_reason = excluded.revoked_reason"
        )
        if con is not None:
            con.execute(sql, values)
            return
        with self.write() as c:
            c.execute(sql, values)

    def images_for(self, provider: str, account: str, region: str, fingerprint: str) -> list[sqlite3.Row]:
        return self.read(
            "SELECT * FROM images WHERE provider=? AND account=? AND region=? AND fingerprint=? AND state='available'"
            " ORDER BY created_at DESC, id DESC",
            (provider, account, region, fingerprint),
        )

    def verified_as(self, provider: str, fingerprint: str) -> str | None:
        """What a verify play said of this content anywhere (a copy or adoption of it)."""
        rows = self.read(
            "SELECT verified FROM images WHERE provider=? AND fingerprint=? AND verified IS NOT NULL"
            " ORDER BY verified != 'passed', id DESC LIMIT 1",
            (provider, fingerprint),
        )
        return str(rows[0]["verified"]) if rows else None

    def set_verified(self, provider: str, region: str, image_id: str, verified: str) -> None:
        with self.write() as con:
            con.execute(
                "UPDATE images SET verified=? WHERE provider=? AND region=? AND image_id=?",
                (verified, provider, region, image_id),
            )

    def mark_gone(self, provider: str, account: str, region: str, image_ids: list[str]) -> None:
        if not image_ids:
            return
        with self.write() as con:
            con.executemany(
                "UPDATE images SET state='gone' WHERE provider=? AND account=? AND region=? AND image_id=? AND state='available'",
                [(provider, account, region, i) for i in image_ids],
            )

    def copy_regions(self, provider: str, account: str, fingerprint: str, exclude: str) -> list[str]:
        """Other regions where the database knows an image with this fingerprint."""
        rows = self.read(
            "SELECT DISTINCT region FROM images WHERE provider=? AND account=? AND fingerprint=? AND region != ?"
            " AND state='available' GROUP BY region ORDER BY min(origin != 'built'), region",
            (provider, account, fingerprint, exclude),
        )
        return [str(r["region"]) for r in rows]

    def by_image(self, image_id: str) -> list[sqlite3.Row]:
        return self.read("SELECT * FROM images WHERE image_id=? ORDER BY id", (image_id,))

    def revoke(self, image_id: str, reason: str) -> None:
        with self.write() as con:
            con.execute("UPDATE images SET state='revoked', revoked_reason=? WHERE image_id=?", (reason, image_id))

    def set_state(self, provider: str, account: str, region: str, image_id: str, state: str) -> None:
        with self.write() as con:
            con.execute(
                "UPDATE images SET state=? WHERE provider=? AND account=? AND region=? AND image_id=?",
                (state, provider, account, region, image_id),
            )

    def last_confirmed(self, provider: str, region: str) -> str | None:
        rows = self.read("SELECT max(at) AS at FROM confirmations WHERE provider=? AND region=?", (provider, region))
        return str(rows[0]["at"]) if rows and rows[0]["at"] else None

    def confirmed(self, provider: str, account: str, region: str) -> None:
        with self.write() as con:
            con.execute("INSERT OR REPLACE INTO confirmations VALUES (?, ?, ?, ?)", (provider, account, region, now()))

    # -- builds -----------------------------------------------------------------------------

    def start_build(
        self, provider: str, region: str, customer: str, distro: str, role: str, fingerprint: str, log: Path
    ) -> int:
        with self.write() as con:
            cur = con.execute(
                "INSERT INTO builds (provider, region, customer, distro, role, fingerprint, started_at, status,"
                " log_path, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    provider,
                    region,
                    customer,
                    distro,
                    role,
                    fingerprint,
                    now(),
                    str(log),
                    socket.gethostname(),
                    os.getpid(),
                ),
            )
            return int(cur.lastrowid or 0)

    def set_build(self, build_id: int, **values: Any) -> None:
        """What a build ran on, with which tools, and how long (columns of ADDED_COLUMNS)."""
        unknown = set(values) - BUILD_DETAILS
        if unknown:
            raise ValueError(f"not a build detail: {sorted(unknown)}")
        names = sorted(values)
        with self.write() as con:
            con.execute(
                f"UPDATE builds SET {', '.join(f'{n}=?' for n in names)} WHERE id=?",
                (*(values[n] for n in names), build_id),
            )

    def set_size(self, provider: str, account: str, region: str, image: Any) -> None:
        with self.write() as con:
            con.execute(
                "UPDATE images SET volume_gb=?, snapshots=? WHERE provider=? AND account=? AND region=? AND image_id=?",
                (image.volume_gb, len(image.snapshot_ids), provider, account, region, image.image_id),
            )

    def set_missed(self, build_id: int, names: list[str]) -> None:
        with self.write() as con:
            con.execute("UPDATE builds SET missed_inputs=? WHERE id=?", (json.dumps(names), build_id))

    def missed_for(self, image_id: str) -> list[str]:
        rows = self.read(
            "SELECT missed_inputs FROM builds WHERE image_id=? AND missed_inputs IS NOT NULL ORDER BY id DESC LIMIT 1",
            (image_id,),
        )
        return list(json.loads(rows[0]["missed_inputs"])) if rows else []

    def finish_build(
        self,
        build_id: int,
        status: str,
        image_id: str | None = None,
        message: str | None = None,
        con: sqlite3.Connection | None = None,
    ) -> None:
        sql = "UPDATE builds SET status=?, finished_at=?, image_id=?, message=? WHERE id=?"
        args = (status, now(), image_id, message, build_id)
        if con is not None:
            con.execute(sql, args)
            return
        with self.write() as c:
            c.execute(sql, args)
