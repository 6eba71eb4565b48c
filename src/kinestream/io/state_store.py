"""SQLite checkpoints of tracker state, and the lock that gives one daemon a state directory.

One row per vehicle: the tracker's opaque state blob, the last kinematics record (JSON, for
``kinestream state show`` and for re-publishing retained state), the vehicle's last event time
and the wall time its last reading arrived (so ticks resume correctly after a restart). The
``meta`` table records which write-ahead-log segments a checkpoint covers; the checkpoint and
that number are committed in one transaction, so a crash leaves either the old or the new pair.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kinestream.errors import KinestreamError

DB_NAME = "state.sqlite3"
LOCK_NAME = "lock"
WAL_DIR_NAME = "wal"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vehicles (
    vehicle_id TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    last_record BLOB,
    last_ts REAL,
    received_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""
_UPSERT = (
    "INSERT INTO vehicles (vehicle_id, state, last_record, last_ts, received_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(vehicle_id) DO UPDATE SET state = excluded.state, "
    "last_record = excluded.last_record, last_ts = excluded.last_ts, "
    "received_at = excluded.received_at"
)


# vehicle_id, state, last_record (JSON), last_ts, received_at
Row = tuple[str, bytes, bytes | None, float | None, float | None]


class StateDirLockedError(KinestreamError):
    """Another process (a running daemon) holds the state directory."""


@dataclass(frozen=True, slots=True)
class StoredVehicle:
    vehicle_id: str
    state: bytes
    last_record: bytes | None  # the last kinematics record, JSON
    last_ts: float | None
    received_at: float | None  # wall time the last reading arrived


class StateStore:
    """Checkpoints in ``<state_dir>/state.sqlite3``.

    ``save`` may run in a worker thread while the event loop reads (SQLite's WAL journal lets a
    reader and one writer work at once). Reads use one connection per thread; writes share one
    writer connection, whichever thread they come from: a connection per writing thread would
    stay open after its thread ended (the checkpointer starts a thread per checkpoint; measured
    2 file descriptors and ~120 KB of memory left behind per checkpoint).
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / DB_NAME
        state_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()  # one write transaction at a time
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection for reads."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._open()
        return connection

    def _writer_connection(self) -> sqlite3.Connection:
        """The connection every write uses (call with ``_write_lock`` held)."""
        if self._writer is None:
            self._writer = self._open()
        return self._writer

    def _discard_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with self._connections_lock, contextlib.suppress(ValueError):
                self._connections.remove(writer)
            with contextlib.suppress(sqlite3.Error):
                writer.close()

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed checkpoint survives power loss, because the log segments it
        # covers are deleted right after the commit.
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=5000")
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def save(self, vehicles: Iterable[StoredVehicle], wal_generation: int | None = None) -> int:
        """Upsert vehicles (and the first log segment not covered) in one transaction."""
        transaction = self.begin_save()
        try:
            transaction.write(vehicles)
            transaction.commit(wal_generation)
        except BaseException:
            transaction.rollback()
            raise
        return transaction.rows

    def begin_save(self) -> SaveTransaction:
        """One write transaction filled in steps, for checkpoints too large to hold at once."""
        return SaveTransaction(self)

    def wal_generation(self) -> int:
        """The first log segment the last checkpoint does not cover (0: replay everything)."""
        row = (
            self._connection()
            .execute("SELECT value FROM meta WHERE key = 'wal_generation'")
            .fetchone()
        )
        return int(row[0]) if row else 0

    def load(self, vehicle_id: str) -> StoredVehicle | None:
        """The vehicle's saved state, carrying the caller's ``vehicle_id`` string itself: a
        resumed vehicle then keeps one copy of its id, not SQLite's too (56 B each)."""
        row = (
            self._connection()
            .execute(
                "SELECT state, last_record, last_ts, received_at FROM vehicles "
                "WHERE vehicle_id = ?",
                (vehicle_id,),
            )
            .fetchone()
        )
        return StoredVehicle(vehicle_id, *row) if row else None

    def recent(self, limit: int) -> Iterator[StoredVehicle]:
        """Vehicles whose last reading arrived most recently first (what to load on start)."""
        cursor = self._connection().execute(
            "SELECT vehicle_id, state, last_record, last_ts, received_at FROM vehicles "
            "ORDER BY received_at DESC LIMIT ?",
            (limit,),
        )
        for row in cursor:
            yield StoredVehicle(*row)

    def ids(self) -> set[str]:
        return {row[0] for row in self._connection().execute("SELECT vehicle_id FROM vehicles")}

    def list_ids(self) -> list[str]:
        rows = self._connection().execute("SELECT vehicle_id FROM vehicles ORDER BY vehicle_id")
        return [row[0] for row in rows]

    def count(self) -> int:
        return int(self._connection().execute("SELECT count(*) FROM vehicles").fetchone()[0])

    def delete(self, vehicle_id: str) -> bool:
        with self._write_lock, self._writer_connection() as connection:
            cursor = connection.execute("DELETE FROM vehicles WHERE vehicle_id = ?", (vehicle_id,))
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()
        self._writer = None


class SaveTransaction:
    """Vehicles upserted chunk by chunk, then committed with the covered-log number at once.

    Readers see all of it or none of it, as with one ``save``; a crash before ``commit``
    leaves the previous checkpoint. The steps may run in different threads, one at a time
    (the checkpointer writes each chunk from a worker thread and lets it go): the transaction
    holds the store's writer connection, and its lock, from the first step to the last.
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._connection: sqlite3.Connection | None = None
        self.rows = 0

    def write(self, vehicles: Iterable[StoredVehicle]) -> None:
        """Upsert ``vehicles``; consumed lazily, one row at a time (SQLite copies each)."""
        self.write_rows(
            (v.vehicle_id, v.state, v.last_record, v.last_ts, v.received_at) for v in vehicles
        )

    def write_rows(self, rows: Iterable[Row]) -> None:
        """``write`` for rows already in the table's column order (no object per row)."""
        self.rows += self._begin().executemany(_UPSERT, rows).rowcount

    def commit(self, wal_generation: int | None = None) -> None:
        """Record the first log segment not covered (if given) and make it all durable."""
        connection = self._begin()
        try:
            if wal_generation is not None:
                connection.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('wal_generation', ?)",
                    (wal_generation,),
                )
            connection.commit()
        except BaseException:
            self.rollback()
            raise
        self._end()

    def rollback(self) -> None:
        """Give up the transaction (nothing of it is kept); harmless once ended."""
        if self._connection is not None:
            try:
                self._connection.rollback()
            except sqlite3.Error:  # unusable: closing it discards the transaction
                self._store._discard_writer()
            finally:
                self._end()

    def _begin(self) -> sqlite3.Connection:
        if self._connection is None:
            self._store._write_lock.acquire()
            self._connection = self._store._writer_connection()
        return self._connection

    def _end(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._store._write_lock.release()


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Take the state directory for this process (flock, released when the process dies).

    Raises ``StateDirLockedError`` naming the holder's pid when a daemon already has it. Keep the
    returned file open for as long as the directory is in use.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / LOCK_NAME).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StateDirLockedError(
            f"state directory {str(state_dir)!r} is in use by another kinestream process "
            f"(pid {holder}); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def release_state_dir(handle: IO[str]) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()
