"""SQLite checkpoints and the state-directory lock."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kinestream.io.state_store import (
    StateDirLockedError,
    StateStore,
    StoredVehicle,
    lock_state_dir,
    release_state_dir,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def vehicle(vehicle_id: str, received_at: float = 1.0, state: bytes = b"s") -> StoredVehicle:
    return StoredVehicle(vehicle_id, state, b'{"distance_m": 1.0}', 10.0, received_at)


def test_save_load_upsert_delete(tmp_path):
    """Saved vehicles load back byte for byte; saving again replaces; delete removes."""
    store = StateStore(tmp_path)
    assert store.save([vehicle("a"), vehicle("b")], wal_generation=3) == 2
    assert store.load("a") == vehicle("a")
    store.save([vehicle("a", state=b"\x00new")])
    assert store.load("a").state == b"\x00new"
    assert store.list_ids() == ["a", "b"]
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.load("a") is None
    assert store.count() == 1
    store.close()


def test_load_carries_the_callers_id_string(tmp_path):
    """A vehicle resumed from the store keeps one copy of its id in memory (the caller's),
    not a second one read from SQLite."""
    store = StateStore(tmp_path)
    store.save([vehicle("truck-7")])
    asked = "".join(["truck", "-7"])  # equal, but not the string that was saved
    assert store.load(asked).vehicle_id is asked
    store.close()


def test_wal_generation_is_committed_with_the_checkpoint(tmp_path):
    """The covered-log number survives reopening; 0 (replay everything) when never saved."""
    store = StateStore(tmp_path)
    assert store.wal_generation() == 0
    store.save([vehicle("a")], wal_generation=7)
    store.close()
    assert StateStore(tmp_path).wal_generation() == 7


def test_recent_orders_by_arrival(tmp_path):
    """On start the most recently active vehicles load first, up to a limit."""
    store = StateStore(tmp_path)
    store.save([vehicle("old", 1.0), vehicle("new", 3.0), vehicle("mid", 2.0)])
    assert [v.vehicle_id for v in store.recent(2)] == ["new", "mid"]


def test_save_from_a_worker_thread_while_reading(tmp_path):
    """A checkpoint written from a thread is visible to the loop thread's connection."""
    store = StateStore(tmp_path)
    store.save([vehicle("a")])
    worker = threading.Thread(target=store.save, args=([vehicle(f"v{i}") for i in range(500)],))
    worker.start()
    store.load("a")
    worker.join()
    assert store.count() == 501


def test_a_transaction_written_in_chunks_from_threads_is_seen_whole_or_not_at_all(tmp_path):
    """Chunks written from different threads stay invisible to readers until the commit
    (which records the covered log with them); a rolled-back one leaves nothing."""
    store = StateStore(tmp_path)
    store.save([vehicle("a")], wal_generation=1)
    transaction = store.begin_save()
    for chunk in (["b", "c"], ["d"]):
        rows = [vehicle(v) for v in chunk]
        worker = threading.Thread(target=transaction.write, args=(rows,))
        worker.start()
        worker.join()
    assert (store.count(), store.wal_generation()) == (1, 1)
    transaction.commit(wal_generation=2)
    assert (store.count(), store.wal_generation(), transaction.rows) == (4, 2, 3)

    abandoned = store.begin_save()
    abandoned.write([vehicle("e"), vehicle("a", state=b"lost")])
    abandoned.rollback()
    store.save([vehicle("f")], wal_generation=3)  # the writer is free again
    assert store.list_ids() == ["a", "b", "c", "d", "f"]
    assert (store.load("a").state, store.wal_generation()) == (b"s", 3)
    store.close()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_saves_from_many_threads_leave_no_connection_behind(tmp_path):
    """The daemon writes each checkpoint from a new thread; the file descriptors (and memory)
    of a connection per thread must not pile up, one checkpoint after another."""
    store = StateStore(tmp_path)

    def save_in_a_new_thread(i: int) -> None:
        worker = threading.Thread(target=store.save, args=([vehicle(f"v{i}")], i))
        worker.start()
        worker.join()

    save_in_a_new_thread(0)
    open_fds = len(os.listdir("/proc/self/fd"))
    for i in range(1, 30):
        save_in_a_new_thread(i)
    assert len(os.listdir("/proc/self/fd")) == open_fds
    assert store.count() == 30
    assert store.wal_generation() == 29
    store.close()


def test_lock_refuses_a_second_process(tmp_path):
    """While one process holds the state dir, another gets StateDirLockedError naming the pid."""
    handle = lock_state_dir(tmp_path)
    probe = (
        "import sys, pathlib\n"
        "from kinestream.io.state_store import lock_state_dir, StateDirLockedError\n"
        "try:\n    lock_state_dir(pathlib.Path(sys.argv[1]))\n"
        "except StateDirLockedError as e:\n    print(e); sys.exit(3)\n"
    )
    env_path = {"PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env_path,
        check=False,
    )
    assert result.returncode == 3
    assert str(os.getpid()) in result.stdout
    release_state_dir(handle)
    again = lock_state_dir(tmp_path)
    release_state_dir(again)


def test_lock_in_same_process_is_exclusive(tmp_path):
    """Two opens in one process conflict too (flock is per open file description)."""
    handle = lock_state_dir(tmp_path)
    with pytest.raises(StateDirLockedError):
        lock_state_dir(tmp_path)
    release_state_dir(handle)
