"""Write-ahead log: what is written comes back in order; a torn tail is dropped, not fatal."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from kinestream.config import WalFsync
from kinestream.io import wal as wal_module
from kinestream.io.wal import (
    WalEntry,
    WriteAheadLog,
    decode_records,
    encode_record,
    list_generations,
    segment_path,
)

entries_strategy = st.lists(
    st.builds(
        WalEntry,
        received_at=st.floats(allow_nan=False, allow_infinity=False),
        topic=st.text(max_size=40),
        payload=st.binary(max_size=200),
        redelivered=st.booleans(),
    ),
    max_size=30,
)


@given(entries_strategy)
@settings(max_examples=200, deadline=None)
def test_records_round_trip(entries):
    """Any topic text and payload bytes decode to exactly what was encoded, in order."""
    data = b"".join(
        encode_record(e.received_at, e.topic, e.payload, e.redelivered) for e in entries
    )
    decoded, intact = decode_records(data)
    assert decoded == entries
    assert intact == len(data)


@given(entries_strategy.filter(bool), st.data())
@settings(max_examples=200, deadline=None)
def test_any_truncation_keeps_every_whole_record(entries, data):
    """Cutting the log anywhere (a killed writer) loses only the record that was cut."""
    records = [encode_record(e.received_at, e.topic, e.payload, e.redelivered) for e in entries]
    blob = b"".join(records)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    decoded, intact = decode_records(blob[:cut])
    whole = 0
    total = 0
    for record in records:
        if total + len(record) > cut:
            break
        total += len(record)
        whole += 1
    assert decoded == entries[:whole]
    assert intact == total


def test_corrupted_tail_is_detected_by_checksum():
    """A last record with flipped bytes (same length) is refused by its CRC."""
    good = encode_record(1.0, "vehicles/a/speed", b"12.5")
    bad = bytearray(encode_record(2.0, "vehicles/a/speed", b"13.5"))
    bad[-1] ^= 0xFF
    decoded, intact = decode_records(good + bytes(bad))
    assert [e.payload for e in decoded] == [b"12.5"]
    assert intact == len(good)


def test_segments_replay_after_restart_and_torn_tail_is_truncated(tmp_path):
    """A new log instance replays older segments; a torn record is dropped and cut off."""
    wal = WriteAheadLog(tmp_path, WalFsync.NEVER)
    wal.open_next()
    for i in range(5):
        wal.append(100.0 + i, f"vehicles/v{i}/speed", str(i).encode())
    wal.write_pending()
    generation = wal.generation
    # Simulate kill -9 mid-write: half a record at the end, no close().
    partial = encode_record(200.0, "vehicles/x/speed", b"torn")[:9]
    with segment_path(tmp_path, generation).open("ab") as handle:
        handle.write(partial)

    restarted = WriteAheadLog(tmp_path, WalFsync.NEVER)
    entries, report = restarted.replay(from_generation=0)
    assert [e.payload for e in entries] == [b"0", b"1", b"2", b"3", b"4"]
    assert entries[0] == WalEntry(100.0, "vehicles/v0/speed", b"0")
    assert report.torn_bytes_dropped == len(partial)
    again, report_again = restarted.replay(from_generation=0)
    assert len(again) == 5
    assert report_again.torn_bytes_dropped == 0


def test_replay_each_hands_over_each_entry_before_decoding_the_next(tmp_path, monkeypatch):
    """A restart handles the log one entry at a time (never every logged message at once),
    in order across segments, and still cuts a torn tail off."""
    wal = WriteAheadLog(tmp_path, WalFsync.NEVER)
    for segment in range(2):
        wal.open_next()
        for i in range(3):
            wal.append(100.0 + i, f"vehicles/v{segment}/speed", f"{segment}.{i}".encode())
        wal.write_pending()
    with segment_path(tmp_path, wal.generation).open("ab") as handle:
        handle.write(encode_record(200.0, "vehicles/x/speed", b"torn")[:9])
    wal.close()

    decoded = []
    records = wal_module.iter_records

    def counting_iter_records(data):
        for entry, end in records(data):
            decoded.append(entry.payload)
            yield entry, end

    handled = []
    monkeypatch.setattr(wal_module, "iter_records", counting_iter_records)
    report = WriteAheadLog(tmp_path, WalFsync.NEVER).replay_each(
        0, lambda entry: handled.append((entry.payload, len(decoded)))
    )
    payloads = [b"0.0", b"0.1", b"0.2", b"1.0", b"1.1", b"1.2"]
    assert handled == [(payload, n) for n, payload in enumerate(payloads, start=1)]
    assert (report.entries, report.torn_bytes_dropped) == (6, 9)


def test_unwritten_buffer_is_not_on_disk(tmp_path):
    """Appends are buffered: only write_pending hands them to the OS (ack comes after that)."""
    wal = WriteAheadLog(tmp_path, WalFsync.NEVER)
    wal.open_next()
    wal.append(1.0, "t", b"p")
    assert wal.pending
    assert segment_path(tmp_path, wal.generation).stat().st_size == 0
    wal.write_pending()
    assert not wal.pending
    assert segment_path(tmp_path, wal.generation).stat().st_size == len(
        encode_record(1.0, "t", b"p")
    )


def test_checkpoint_rotation_covers_older_segments(tmp_path):
    """After open_next + drop_before, covered segments are gone and replay skips them."""
    wal = WriteAheadLog(tmp_path, WalFsync.ALWAYS)
    first = wal.open_next()
    wal.append(1.0, "t", b"old")
    second = wal.open_next()  # a checkpoint starts here
    assert second == first + 1
    wal.append(2.0, "t", b"new")
    wal.write_pending()
    assert wal.size_bytes > 0
    wal.drop_before(second)
    assert list_generations(tmp_path) == [second]
    wal.close()
    entries, _ = WriteAheadLog(tmp_path).replay(from_generation=second)
    assert [e.payload for e in entries] == [b"new"]


def test_replay_skips_covered_segments_left_by_a_crash(tmp_path):
    """Segments below the checkpoint's number (not yet deleted at a crash) are not replayed."""
    wal = WriteAheadLog(tmp_path, WalFsync.NEVER)
    wal.open_next()
    wal.append(1.0, "t", b"covered")
    covered_up_to = wal.open_next()
    wal.append(2.0, "t", b"after")
    wal.write_pending()
    os.close(wal._fd)  # crash: no close(), no drop_before
    entries, _ = WriteAheadLog(tmp_path).replay(from_generation=covered_up_to)
    assert [e.payload for e in entries] == [b"after"]


def test_new_segment_numbers_never_reuse_old_ones(tmp_path):
    """A restarted log continues numbering after the highest segment on disk."""
    wal = WriteAheadLog(tmp_path)
    wal.open_next()
    wal.open_next()
    wal.close()
    restarted = WriteAheadLog(tmp_path)
    assert restarted.open_next() == 3
    restarted.close()
