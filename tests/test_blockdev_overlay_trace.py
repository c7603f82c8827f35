"""Overlay (copy-on-write sidecar) and TracingDevice."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsproto.errors import DeviceError, FormatError, GeometryError, MediaError, ReadOnlyError
from fsproto.rawdev import (
    FaultInjectingDevice,
    ImageFile,
    MemoryDevice,
    Overlay,
    TracingDevice,
    open_device,
    read_trace,
    summarise,
)

BS = 512


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "base.img"
    path.write_bytes(os.urandom(256 * BS))
    return path


# -- Overlay -----------------------------------------------------------------------------------
def test_base_hash_unchanged_after_writes_and_reopen(image, tmp_path):
    before = sha(image)
    side = tmp_path / "base.cow"
    with open_device(str(image), writable=True, overlay=side) as dev:
        dev.write(3, b"\x01" * BS * 4)
        dev.write(200, b"\x02" * BS)
        dev.write(4, b"\x03" * BS)  # rewrite inside an overlaid run
        assert dev.read(2, 4) == image.read_bytes()[2 * BS : 3 * BS] + b"\x01" * BS + b"\x03" * BS + b"\x01" * BS
    assert sha(image) == before
    # The sidecar persists: reopening shows the same view, read-only unless asked.
    with open_device(str(image), overlay=side) as dev:
        assert dev.read(200) == b"\x02" * BS and dev.read(4) == b"\x03" * BS
        with pytest.raises(ReadOnlyError):
            dev.write(0, bytes(BS))
    assert sha(image) == before


def test_commit_applies_and_discard_forgets(image, tmp_path):
    expected = bytearray(image.read_bytes())
    with Overlay(ImageFile(image), tmp_path / "c.cow") as ov:
        ov.write(10, b"\x07" * 3 * BS)
        with pytest.raises(ReadOnlyError):
            ov.commit()  # base opened read-only
        assert ov.discard() == 3
        assert ov.read(10, 3) == bytes(expected[10 * BS : 13 * BS])
    with Overlay(ImageFile(image, writable=True), tmp_path / "c.cow") as ov:
        ov.write(10, b"\x07" * 3 * BS)
        ov.write(0, b"\x08" * BS)
        assert ov.commit() == 4 and ov.dirty_blocks == 0
    expected[10 * BS : 13 * BS] = b"\x07" * 3 * BS
    expected[0:BS] = b"\x08" * BS
    assert image.read_bytes() == bytes(expected)
    # After a commit the emptied sidecar matches the changed base and reopens cleanly.
    with Overlay(ImageFile(image), tmp_path / "c.cow") as ov:
        assert ov.dirty_blocks == 0


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 31), st.integers(1, 4), st.integers(0, 255)), max_size=15))
def test_overlay_matches_a_model_across_reopen(tmp_path_factory, ops):
    d = tmp_path_factory.mktemp("ov")
    base_bytes = os.urandom(32 * BS)
    base = MemoryDevice.from_bytes(base_bytes, read_only=True)
    model = bytearray(base_bytes)
    with Overlay(base, d / "s.cow", owns_inner=False) as ov:
        for lba, n, v in ops:
            n = min(n, 32 - lba)
            ov.write(lba, bytes([v]) * n * BS)
            model[lba * BS : (lba + n) * BS] = bytes([v]) * n * BS
        assert ov.read(0, 32) == bytes(model)
    with Overlay(base, d / "s.cow", owns_inner=False) as ov:
        assert ov.read(0, 32) == bytes(model)
    assert base.snapshot() == base_bytes


def test_torn_sidecar_tail_is_ignored(image, tmp_path):
    side = tmp_path / "t.cow"
    with Overlay(ImageFile(image), side) as ov:
        ov.write(1, b"\x11" * BS)
        ov.write(50, b"\x22" * BS * 2)
    os.truncate(side, side.stat().st_size - 100)  # the process died mid-append of the 2nd record
    with Overlay(ImageFile(image), side) as ov:
        assert ov.dirty_blocks == 1 and ov.read(1) == b"\x11" * BS
        assert ov.read(50) == image.read_bytes()[50 * BS : 51 * BS]


def test_sidecar_for_another_base_is_refused(image, tmp_path):
    side = tmp_path / "x.cow"
    with Overlay(ImageFile(image), side) as ov:
        ov.write(0, bytes(BS))
    other = tmp_path / "other.img"
    other.write_bytes(bytes(128 * BS))
    with pytest.raises(GeometryError, match="made for 256"):
        Overlay(ImageFile(other), side)
    other.write_bytes(bytes(256 * BS))
    with pytest.raises(DeviceError, match="different base"):
        Overlay(ImageFile(other), side)
    junk = tmp_path / "junk.cow"
    junk.write_bytes(b"hello")
    with pytest.raises(DeviceError, match="not an fsproto overlay"):
        Overlay(ImageFile(image), junk)


# -- Trace -------------------------------------------------------------------------------------
def test_trace_records_every_io_and_summarises(tmp_path):
    path = tmp_path / "io.trace"
    inner = FaultInjectingDevice(MemoryDevice(64), read_errors=[40])
    with TracingDevice(inner, path) as dev:
        for lba in range(0, 16, 4):
            dev.read(lba, 4)
        dev.write(20, bytes(2 * BS))
        dev.write(30, bytes(BS))
        with pytest.raises(MediaError):
            dev.read(39, 2)
        dev.flush()
    header, records = read_trace(path)
    recs = list(records)
    assert header["block_size"] == "512" and header["num_blocks"] == "64"
    # 4 reads, 2 writes, the failed read, the explicit flush and the one close() does.
    assert [(r.op, r.lba, r.count, r.status) for r in recs] == [
        ("read", 0, 4, "ok"), ("read", 4, 4, "ok"), ("read", 8, 4, "ok"), ("read", 12, 4, "ok"),
        ("write", 20, 2, "ok"), ("write", 30, 1, "ok"), ("read", 39, 2, "MediaError"),
        ("flush", 0, 0, "ok"), ("flush", 0, 0, "ok"),
    ]
    assert all(b.t_ns >= a.t_ns for a, b in zip(recs, recs[1:]))
    summary, span = summarise(iter(recs))
    assert summary["read"].ops == 5 and summary["read"].blocks == 18 and summary["read"].errors == 1
    assert summary["read"].sequential == 3 and summary["read"].sizes == {4: 4, 2: 1}
    assert (summary["write"].lba_min, summary["write"].lba_max) == (20, 30)
    assert summary["flush"].ops == 2 and span > 0


def test_bad_trace_files(tmp_path):
    with pytest.raises(FormatError, match="not an fsproto trace"):
        (tmp_path / "a").write_text("hello\n")
        read_trace(tmp_path / "a")
    (tmp_path / "b").write_text("# fsproto-trace 1 device=x\n1\tread\t0\t1\t5\tok\n2\tfrob\t0\n")
    _, recs = read_trace(tmp_path / "b")
    with pytest.raises(FormatError) as ei:
        list(recs)
    assert "line 3" in str(ei.value)


def test_open_device_with_trace_and_overlay(image, tmp_path):
    before = sha(image)
    with open_device(str(image), writable=True, overlay=tmp_path / "o.cow", trace=tmp_path / "t.trace") as dev:
        dev.write(5, b"\x44" * BS)
        assert dev.read(5) == b"\x44" * BS
    assert sha(image) == before
    _, recs = read_trace(tmp_path / "t.trace")
    assert [(r.op, r.lba) for r in recs][:2] == [("write", 5), ("read", 5)]


def test_commit_of_a_long_run_is_chunked(tmp_path):
    base = MemoryDevice(5000, BS)
    with Overlay(base, tmp_path / "l.cow", owns_inner=False) as ov:
        ov.write(0, b"\x66" * BS * 5000)
        calls = []
        assert ov.commit(lambda done, total: calls.append((done, total))) == 5000
    assert calls == [(2048, 5000), (4096, 5000), (5000, 5000)]
    assert base.snapshot() == b"\x66" * BS * 5000
