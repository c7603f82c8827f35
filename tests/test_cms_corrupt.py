"""Corrupt and lying images: typed errors naming block and offset, no hang, no write."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsproto.errors import FormatError, FsprotoError, InvalidName, UnknownFormat
from fsproto.formats.cms import FORMAT
from fsproto.rawdev import MemoryDevice

BS = 512


def _sample() -> bytes:
    dev = MemoryDevice(num_blocks=(1 << 20) // 512, block_size=512)
    FORMAT.mkfs(dev, block_size=BS, label="BAD")
    fs = FORMAT.open(dev)
    fs.create("/TREE.V")
    for i in range(60):  # 60 records of 500 bytes: ~59 blocks, 2 levels at 512 (ppb 42)
        fs.write("/TREE.V", i * 500, bytes([i]) * 500)
    fs.create("/FIXED.F")
    fs.setxattr("/FIXED.F", "user.record_format", b"F")
    fs.setxattr("/FIXED.F", "user.record_lrecl", b"80")
    fs.write("/FIXED.F", 0, b"f" * 8000)
    fs.close()
    return dev.snapshot()


SAMPLE = _sample()


def _fst_off(img: bytes, name: bytes) -> int:
    """Byte offset of the FST whose name starts with *name* (in the directory's first block)."""
    base = 3 * BS  # block 4
    for s in range(BS // 64):
        if img[base + s * 64 : base + s * 64 + len(name)] == name:
            return base + s * 64
    raise AssertionError(name)


def _fst(img: bytes, name: str) -> tuple[int, tuple]:
    off = _fst_off(img, name.encode("cp1047"))
    return off, struct.unpack_from(">IIIIBB", img, off + 40)  # fop, blocks, records, (lrecl skipped)...


def _open(img: bytes | bytearray, writable: bool = True):
    dev = MemoryDevice.from_bytes(bytes(img), read_only=not writable)
    return dev, FORMAT.open(dev)


def _read_all(fs) -> None:
    for st_ in fs.listdir("/"):
        fs.read("/" + st_.name, 0, st_.size)


def test_truncated_image() -> None:
    dev = MemoryDevice.from_bytes(SAMPLE[: len(SAMPLE) // 2])
    with pytest.raises(FormatError, match="holds only"):
        FORMAT.open(dev)
    assert not FORMAT.probe(dev)
    report = FORMAT.fsck(dev, repair=True)
    assert not report.clean and report.errors[0].code == "label"
    assert dev.snapshot() == SAMPLE[: len(SAMPLE) // 2]  # a disk that failed its checks is never written


@pytest.mark.parametrize("field,offset,value,msg", [
    ("ADTDBSIZ", 12, 3000, "ADTDBSIZ"),
    ("ADTDOP", 16, 9, "ADTDOP"),
    ("ADTFSTSZ", 36, 32, "ADTFSTSZ"),
    ("ADTNFST", 40, 7, "ADTNFST"),
    ("ADTNUM", 28, 3, "ADTNUM"),
    ("ADTNUM", 28, 1 << 30, "holds only"),
])
def test_label_that_lies(field: str, offset: int, value: int, msg: str) -> None:
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, 2 * BS + offset, value)
    dev = MemoryDevice.from_bytes(bytes(img))
    with pytest.raises(FormatError, match=msg) as e:
        FORMAT.open(dev)
    assert e.value.offset == 2 * BS and e.value.struct == "ADT"
    assert not FORMAT.probe(dev)
    assert dev.snapshot() == bytes(img)


def test_no_label() -> None:
    dev = MemoryDevice(num_blocks=64, block_size=512)
    with pytest.raises(UnknownFormat):
        FORMAT.open(dev)
    assert not FORMAT.probe(dev)
    assert not FORMAT.probe(MemoryDevice(num_blocks=1, block_size=512))


def _tree_v():
    dev, fs = _open(SAMPLE, writable=False)
    fm = fs.filemap(fs._key("/TREE.V"))
    assert fm.tree.levels == 2
    return fm.tree


def test_pointer_block_loop() -> None:
    tree = _tree_v()
    top = tree.pointer_levels[-1][0]
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, (top - 1) * BS + 12, top)  # entry 1 of the top block points at the top
    dev, fs = _open(img)
    with pytest.raises(FormatError, match="reached twice|loop") as e:
        _read_all(fs)
    assert e.value.block == top
    assert FORMAT.fsck(dev).errors[0].code == "file-unreadable"
    assert dev.snapshot() == bytes(img)


def test_pointer_past_the_end() -> None:
    tree = _tree_v()
    pb = tree.pointer_levels[0][0]
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, (pb - 1) * BS + 12 * 5, 10**6)
    dev, fs = _open(img)
    with pytest.raises(FormatError, match="outside") as e:
        _read_all(fs)
    assert (e.value.block, e.value.offset) == (pb, 60)


def test_fst_counts_disagree_with_tree() -> None:
    off, _ = _fst(SAMPLE, "TREE")
    # More records than the blocks hold.
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, off + 48, 61)
    with pytest.raises(FormatError, match="record 61"):
        _read_all(_open(img)[1])
    # A data-block count beyond the disk: refused before any walk or allocation.
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, off + 44, 0x7FFFFFFF)
    with pytest.raises(FormatError):
        _read_all(_open(img)[1])
    # Too few levels for the blocks.
    img = bytearray(SAMPLE)
    img[off + 52] = 1
    with pytest.raises(FormatError, match="levels"):
        _read_all(_open(img)[1])
    # F: records x LRECL bigger than the disk.
    foff, _ = _fst(SAMPLE, "FIXED")
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, foff + 48, 0xFFFFFFFF)
    with pytest.raises(FormatError, match="do not fit"):
        _read_all(_open(img)[1])
    # F: fewer records than blocks: fsck names the file.
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, foff + 44, 3)
    report = FORMAT.fsck(MemoryDevice.from_bytes(bytes(img)))
    assert [p.code for p in report.errors] == ["data-blocks"] and "FIXED.F" in report.errors[0].message


def test_zero_length_v_record() -> None:
    tree = _tree_v()
    img = bytearray(SAMPLE)
    first = tree.leaves[0]
    img[(first - 1) * BS : (first - 1) * BS + 2] = b"\x00\x00"
    with pytest.raises(FormatError, match="bad length 0") as e:
        _read_all(_open(img)[1])
    assert (e.value.block, e.value.offset) == (first, 0)


def test_bad_names_and_directory_damage() -> None:
    off = _fst_off(SAMPLE, "FIXED".encode("cp1047"))
    img = bytearray(SAMPLE)
    img[off : off + 8] = "FI*ED   ".encode("cp1047")
    dev, fs = _open(img)
    report = FORMAT.fsck(dev)
    assert [p.code for p in report.errors] == ["bad-name"]
    with pytest.raises(InvalidName):
        fs.stat("/FI*ED.F")
    img = bytearray(SAMPLE)
    img[3 * BS : 3 * BS + 8] = b"\x00" * 8  # DIRECTOR FST gone
    with pytest.raises(FormatError, match="DIRECTOR") as e:
        _open(img)
    assert e.value.block == 4
    img = bytearray(SAMPLE)
    struct.pack_into(">I", img, 3 * BS + 48, 0)  # DIRECTOR record count 0
    with pytest.raises(FormatError):
        _open(img)


def test_cross_linked_files_are_errors() -> None:
    v_off, _ = _fst(SAMPLE, "TREE")
    f_off, _ = _fst(SAMPLE, "FIXED")
    tree = _tree_v()
    img = bytearray(SAMPLE)
    fixed = FORMAT.open(MemoryDevice.from_bytes(SAMPLE)).filemap((b"\xc6\xc9\xe7\xc5\xc4@@@", b"\xc6@@@@@@@"))
    pb = fixed.tree.pointer_levels[0][0]
    struct.pack_into(">I", img, (pb - 1) * BS, tree.leaves[3])  # FIXED's first block = a TREE.V block
    report = FORMAT.fsck(MemoryDevice.from_bytes(bytes(img)))
    codes = {p.code for p in report.errors}
    assert "cross-link" in codes
    assert any(str(tree.leaves[3]) in p.message for p in report.errors if p.code == "cross-link")
    fixed_report = FORMAT.fsck(MemoryDevice.from_bytes(bytes(img)), repair=True)
    assert not fixed_report.clean  # a cross-link is reported as not fixable
    del v_off, f_off


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hits=st.lists(st.tuples(st.integers(0, 140 * BS - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_random_metadata_damage_gives_only_typed_errors(hits) -> None:
    img = bytearray(SAMPLE)
    for off, val in hits:
        img[off] = val
    dev = MemoryDevice.from_bytes(bytes(img))
    try:
        fs = FORMAT.open(dev)
        _read_all(fs)
        FORMAT.open(dev, text=True) and _read_all(FORMAT.open(dev, text=True))
    except FsprotoError:
        pass
    FORMAT.fsck(dev)  # never raises for corruption
    FORMAT.dump(dev) if FORMAT.probe(dev) else None
