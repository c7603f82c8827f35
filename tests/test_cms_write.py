"""CMS writes: defaults, attributes, record semantics, the text view, and every place the spec
says the reference fails (fsproto must get each right)."""

from __future__ import annotations

import os

import pytest

from fsproto.cli import cli
from fsproto.errors import (
    AlreadyExists,
    FileTooBig,
    FsReadOnly,
    InvalidName,
    InvalidOperation,
    NameTooLong,
    NoSpace,
    NoSuchAttribute,
    NotFound,
)
from fsproto.formats.cms import FORMAT
from fsproto.formats.cms.records import iter_records
from fsproto.rawdev import ImageFile, MemoryDevice


def _disk(bs: int = 512, size: int = 2 << 20, sector: int = 512) -> MemoryDevice:
    dev = MemoryDevice(num_blocks=size // sector, block_size=sector)
    FORMAT.mkfs(dev, block_size=bs, label="WRITE")
    return dev


def _clean(dev) -> None:
    report = FORMAT.fsck(dev)
    assert report.problems == [], [str(p) for p in report.problems]


def _records(fs, path: str) -> list[bytes]:
    return list(iter_records(fs.vol, fs.filemap(fs._key(path))))


def test_new_file_defaults_and_attributes() -> None:
    dev = _disk()
    fs = FORMAT.open(dev)
    st = fs.create("/new.file")
    assert st.name == "NEW.FILE" and st.size == 0
    assert (st.extra["recfm"], st.extra["lrecl"], st.extra["mode"]) == ("V", "0", "A1")
    assert fs.listxattr("/NEW.FILE") == ["user.record_format", "user.record_lrecl", "user.file_mode"]
    fs.setxattr("/NEW.FILE", "user.record_format", b"F")
    fs.setxattr("/NEW.FILE", "user.record_lrecl", b"80")
    fs.setxattr("/NEW.FILE", "user.file_mode", b"b2")
    assert fs.getxattr("/NEW.FILE", "user.file_mode") == b"B2"
    with pytest.raises(InvalidOperation):
        fs.setxattr("/NEW.FILE", "user.record_format", b"U")
    with pytest.raises(InvalidOperation):
        fs.setxattr("/NEW.FILE", "user.file_mode", b"A9")
    with pytest.raises(NoSuchAttribute):
        fs.getxattr("/NEW.FILE", "user.other")
    fs.write("/NEW.FILE", 0, b"x" * 100)
    assert fs.stat("/NEW.FILE").size == 160  # F: a partial record is zero-padded
    for name, value in (("user.record_format", b"V"), ("user.record_lrecl", b"10"), ("user.file_mode", b"A1")):
        with pytest.raises(InvalidOperation):
            fs.setxattr("/NEW.FILE", name, value)
    with pytest.raises(AlreadyExists):
        fs.create("/new.FILE")
    _clean(dev)


def test_bad_names() -> None:
    fs = FORMAT.open(_disk())
    for bad in ("/NODOT", "/A.B.C", "/SP ACE.X", "/É.X", "/.X"):
        with pytest.raises(InvalidName):
            fs.create(bad)
    with pytest.raises(NameTooLong):
        fs.create("/TOOLONGNAME.X")
    with pytest.raises(NotFound):
        fs.stat("/MISSING.FILE")
    with pytest.raises(NotFound):
        fs.unlink("/MISSING.FILE")


def test_f_lrecl_above_block_size_with_many_records() -> None:
    """The reference asserts and exits reading these; fsproto reads and writes them."""
    dev = _disk(bs=512)
    fs = FORMAT.open(dev)
    fs.create("/BIG.REC")
    fs.setxattr("/BIG.REC", "user.record_format", b"F")
    fs.setxattr("/BIG.REC", "user.record_lrecl", b"1000")
    data = bytes(range(256)) * 15  # 3840 bytes -> 4 records of 1000 (last one padded)
    fs.write("/BIG.REC", 0, data)
    fs2 = FORMAT.open(dev)
    assert fs2.read("/BIG.REC", 0, 10**6) == data + bytes(160)
    assert fs2.read("/BIG.REC", 999, 3) == data[999:1002]
    assert [len(r) for r in _records(fs2, "/BIG.REC")] == [1000] * 4
    _clean(dev)


@pytest.mark.parametrize("cut", [1, 700, 5000, 5001, 9999, 12001])
def test_v_truncate_anywhere(cut: int) -> None:
    """The reference fails truncating V files past the first block; fsproto cuts records anywhere."""
    dev = _disk(bs=512)
    fs = FORMAT.open(dev)
    fs.create("/V.DATA")
    chunks = [bytes([i]) * (1000 + i) for i in range(12)]  # one record per write
    for c in chunks:
        fs.write("/V.DATA", fs.stat("/V.DATA").size, c)
    whole = b"".join(chunks)
    fs.truncate("/V.DATA", cut)
    fs2 = FORMAT.open(dev)
    assert fs2.read("/V.DATA", 0, 10**6) == whole[:cut]
    recs = _records(fs2, "/V.DATA")
    assert b"".join(recs) == whole[:cut] and all(recs)
    assert int(fs2.stat("/V.DATA").extra["lrecl"]) == max(map(len, recs))
    _clean(dev)


def test_v_binary_write_over_65535_bytes_splits_records() -> None:
    """The reference corrupts data on such a write; fsproto splits it into 65535-byte records."""
    dev = _disk(bs=2048, size=4 << 20)
    fs = FORMAT.open(dev)
    fs.create("/HUGE.BIN")
    data = os.urandom(200_000)
    fs.write("/HUGE.BIN", 0, data)
    fs2 = FORMAT.open(dev)
    assert fs2.read("/HUGE.BIN", 0, 10**6) == data
    assert [len(r) for r in _records(fs2, "/HUGE.BIN")] == [65535, 65535, 65535, 3395]
    assert fs2.stat("/HUGE.BIN").extra["lrecl"] == "65535"
    _clean(dev)


def test_v_overwrite_keeps_record_boundaries_and_gap_is_zero() -> None:
    dev = _disk()
    fs = FORMAT.open(dev)
    fs.create("/R.DATA")
    for rec in (b"a" * 10, b"b" * 20, b"c" * 30):
        fs.write("/R.DATA", fs.stat("/R.DATA").size, rec)
    fs.write("/R.DATA", 5, b"X" * 30)
    assert [len(r) for r in _records(fs, "/R.DATA")] == [10, 20, 30]
    fs.write("/R.DATA", 100, b"tail")
    assert fs.read("/R.DATA", 0, 200) == b"a" * 5 + b"X" * 30 + b"c" * 25 + bytes(40) + b"tail"
    assert [len(r) for r in _records(fs, "/R.DATA")] == [10, 20, 30, 44]
    fs.truncate("/R.DATA", 150)
    assert fs.read("/R.DATA", 0, 200)[104:] == bytes(46)
    _clean(dev)


def test_text_view_lines_and_records() -> None:
    dev = _disk()
    fs = FORMAT.open(dev, text=True)
    fs.create("/PROFILE.EXEC")
    text = "say 'hi'\n\n[x] ^ ¬ é\nno newline at end".encode()
    fs.write("/PROFILE.EXEC", 0, text)
    assert fs.read("/PROFILE.EXEC", 0, 1000) == text  # while open: exactly what was written
    recs = _records(fs, "/PROFILE.EXEC")
    assert recs[1] == b"\x40"  # an empty V line is one blank
    assert recs[2] == "[x] ^ ¬ é".encode("cp1047") and recs[2][0] == 0xAD
    assert len(recs) == 4  # a last line without newline is still a record
    again = FORMAT.open(dev, text=True)
    assert again.read("/PROFILE.EXEC", 0, 1000) == "say 'hi'\n \n[x] ^ ¬ é\nno newline at end\n".encode()
    assert FORMAT.open(dev, text=True, codepage="cp037").read("/PROFILE.EXEC", 0, 1000) != again.read(
        "/PROFILE.EXEC", 0, 1000)
    # F: lines blank-padded to LRECL, a longer line is refused.
    fs.create("/CARDS.TEXT")
    fs.setxattr("/CARDS.TEXT", "user.record_format", b"F")
    fs.setxattr("/CARDS.TEXT", "user.record_lrecl", b"10")
    fs.write("/CARDS.TEXT", 0, b"AB\nCDEF\n")
    assert _records(fs, "/CARDS.TEXT") == ["AB".ljust(10).encode("cp1047"), "CDEF".ljust(10).encode("cp1047")]
    with pytest.raises(InvalidOperation):
        fs.write("/CARDS.TEXT", 8, b"this line is too long\n")
    with pytest.raises(InvalidOperation):
        fs.write("/CARDS.TEXT", 8, "€\n".encode())  # no cp1047 code
    assert _records(fs, "/CARDS.TEXT")[1] == "CDEF".ljust(10).encode("cp1047")
    _clean(dev)


def test_text_written_in_pieces_like_a_kernel_would() -> None:
    dev = _disk()
    fs = FORMAT.open(dev, text=True)
    fs.create("/PIECES.TEXT")
    fs.setxattr("/PIECES.TEXT", "user.record_format", b"F")
    fs.setxattr("/PIECES.TEXT", "user.record_lrecl", b"20")
    text = "line one\nlíne two ¬\nthree\n".encode()
    for i in range(0, len(text), 3):  # splits lines and a two-byte UTF-8 character
        fs.write("/PIECES.TEXT", i, text[i : i + 3])
    assert fs.read("/PIECES.TEXT", 0, 100) == text
    recs = _records(FORMAT.open(dev), "/PIECES.TEXT")
    assert [r.decode("cp1047").rstrip() for r in recs] == ["line one", "líne two ¬", "three"]
    _clean(dev)


def test_rename_replaces_target_and_frees_its_blocks() -> None:
    dev = _disk()
    fs = FORMAT.open(dev)
    for n in ("/A.X", "/B.X"):
        fs.create(n)
        fs.write(n, 0, n.encode() * 500)
    used = fs.amap.used
    fs.rename("/A.X", "/b.x")
    assert [s.name for s in fs.listdir()] == ["B.X"]
    assert fs.read("/B.X", 0, 4) == b"/A.X"
    assert fs.amap.used < used
    with pytest.raises(InvalidName):
        fs.rename("/B.X", "/BAD NAME.X")
    _clean(dev)


def test_mtime_and_century_flag() -> None:
    import time

    dev = _disk()
    fs = FORMAT.open(dev)
    fs.create("/OLD.FILE")
    t = int(time.mktime((1999, 12, 31, 23, 59, 58, 0, 0, -1)))
    fs.set_mtime("/OLD.FILE", t * 10**9)
    fst = fs.dir.slots[fs.dir.index[fs._key("/OLD.FILE")]]
    assert fst.date.hex() == "991231235958" and fst.flag & 0x08 == 0
    assert FORMAT.open(dev).stat("/OLD.FILE").mtime_ns == t * 10**9
    for bad in (-(6 * 10**18), 5 * 10**18, 10**30):  # 1779, 2128, far out
        with pytest.raises(InvalidOperation):
            fs.set_mtime("/OLD.FILE", bad)


def test_disk_full_is_nospace_and_clean() -> None:
    dev = _disk(bs=1024, size=256 << 10)
    fs = FORMAT.open(dev)
    fs.create("/FILL.DATA")
    fs.write("/FILL.DATA", 0, b"k" * 1000)
    with pytest.raises(NoSpace):
        fs.write("/FILL.DATA", 1000, b"z" * (300 << 10))
    with pytest.raises(NoSpace):
        fs.write("/FILL.DATA", 10**12, b"far away")
    assert fs.read("/FILL.DATA", 0, 10**6) == b"k" * 1000
    # Fill it up exactly with small appends until the disk refuses.
    with pytest.raises(NoSpace):
        for _ in range(1000):
            fs.write("/FILL.DATA", fs.stat("/FILL.DATA").size, b"q" * 4000)
    size = fs.stat("/FILL.DATA").size
    _clean(dev)
    assert FORMAT.open(dev).stat("/FILL.DATA").size == size
    assert fs.statfs().free_blocks < 8


def test_read_only_device_refuses_writes_and_writes_nothing() -> None:
    dev = _disk()
    fs = FORMAT.open(dev)
    fs.create("/KEEP.ME")
    before = dev.snapshot()
    ro = MemoryDevice.from_bytes(before, read_only=True)
    rfs = FORMAT.open(ro)
    for call in (lambda: rfs.create("/X.Y"), lambda: rfs.write("/KEEP.ME", 0, b"x"),
                 lambda: rfs.unlink("/KEEP.ME"), lambda: rfs.truncate("/KEEP.ME", 3)):
        with pytest.raises(FsReadOnly):
            call()
    assert ro.snapshot() == before


@pytest.mark.parametrize("bs,sector", [(512, 4096), (4096, 512), (1024, 2048)])
def test_block_size_differs_from_sector_size(bs: int, sector: int) -> None:
    dev = _disk(bs=bs, size=1 << 20, sector=sector)
    fs = FORMAT.open(dev)
    fs.create("/S.DATA")
    data = os.urandom(30000)
    fs.write("/S.DATA", 0, data)
    assert FORMAT.open(dev).read("/S.DATA", 0, 10**6) == data
    _clean(dev)


def test_ten_thousand_files() -> None:
    dev = _disk(bs=4096, size=8 << 20)
    fs = FORMAT.open(dev)
    for i in range(10_000):
        fs.create(f"/F{i:05}.TXT")
    fs.write("/F09999.TXT", 0, b"last")
    fs2 = FORMAT.open(dev)
    assert len(fs2.listdir()) == 10_000
    assert fs2.read("/f09999.txt", 0, 10) == b"last"
    assert fs2.dir.director.records == 10_002 and fs2.dir.director.data_blocks == 157
    fs2.unlink("/F00000.TXT")  # the last FST moves into slot 2
    assert fs2.dir.slots[2].display_name() == "F09999.TXT"
    _clean(dev)


def test_statfs() -> None:
    fs = FORMAT.open(_disk(bs=1024, size=1 << 20))
    s = fs.statfs()
    assert (s.block_size, s.total_blocks, s.label) == (1024, 1024, "WRITE")
    assert s.free_blocks == 1024 - fs.amap.used


def test_cli_mkfs_put_ls_fsck(tmp_path, capsys) -> None:
    img = tmp_path / "cms.img"
    assert cli(["mkfs", "--format", "cms", "--block-size", "1024", "--label", "CLI", "--size", "2M", str(img)]) == 0
    src = tmp_path / "hello.txt"
    src.write_text("hello\nworld\n")
    assert cli(["put", str(img), str(src), "--as", "HELLO.TEXT", "--text"]) == 0
    assert cli(["fsck", str(img)]) == 0
    capsys.readouterr()
    assert cli(["cat", str(img), "HELLO.TEXT", "--text"]) == 0
    assert capsys.readouterr().out == "hello\nworld\n"
    with ImageFile(img) as dev:
        assert FORMAT.probe(dev)
        assert FORMAT.open(dev).stat("/HELLO.TEXT").extra["records"] == "2"
    assert cli(["mkfs", "--format", "cms", "--block-size", "999", str(img)]) != 0


def test_sparse_f_file_reads_holes_as_zeros_and_writes_into_them() -> None:
    """Null blocks (pointer 0) read as zeros; the reference reads them but never writes them."""
    import struct

    dev = _disk(bs=512)
    fs = FORMAT.open(dev)
    fs.create("/SPARSE.F")
    fs.setxattr("/SPARSE.F", "user.record_format", b"F")
    fs.setxattr("/SPARSE.F", "user.record_lrecl", b"512")
    fs.write("/SPARSE.F", 0, b"\x11" * 512 * 6)
    tree = fs.filemap(fs._key("/SPARSE.F")).tree
    pb, hole = tree.pointer_levels[0][0], tree.leaves[2]
    fs.close()
    img = bytearray(dev.snapshot())
    struct.pack_into(">I", img, (pb - 1) * 512 + 2 * 4, 0)  # leaf 2 becomes a null block
    sparse = MemoryDevice.from_bytes(bytes(img))
    fs = FORMAT.open(sparse)
    slot = fs.dir.index[fs._key("/SPARSE.F")]
    fs.amap.clear(hole)
    fs.amap.write_dirty()
    fs.commit_fst(slot, {"data_blocks": 5}, touch=False)
    fs.write_used()
    fs = FORMAT.open(sparse)
    assert fs.read("/SPARSE.F", 0, 4096) == b"\x11" * 1024 + bytes(512) + b"\x11" * 1536
    _clean(sparse)
    fs.write("/SPARSE.F", 1100, b"\x22" * 10)  # into the hole: it gets a block
    assert FORMAT.open(sparse).read("/SPARSE.F", 1024, 512) == bytes(76) + b"\x22" * 10 + bytes(426)
    _clean(sparse)


def test_fba_style_label_at_byte_512() -> None:
    dev = _disk(bs=1024, size=1 << 20)
    img = bytearray(dev.snapshot())
    img[512:592] = img[2048:2128]  # FBA: the label at byte 512 (inside reserved block 1)
    img[2048:2128] = bytes(80)
    fba = MemoryDevice.from_bytes(bytes(img))
    fs = FORMAT.open(fba)
    assert fs.vol.label.offset == 512
    fs.create("/FBA.FILE")
    fs.write("/FBA.FILE", 0, b"on an FBA-style disk")
    again = FORMAT.open(fba)
    assert again.read("/FBA.FILE", 0, 100) == b"on an FBA-style disk"
    assert again.vol.label.fields["ADTUSED"] == again.amap.used  # the label was updated where it is
    _clean(fba)


def test_dump_names_label_fsts_and_pointer_blocks(tmp_path, capsys) -> None:
    dev = _disk(bs=512)
    fs = FORMAT.open(dev)
    fs.create("/TREE.V")
    fs.write("/TREE.V", 0, b"v" * 30000)
    fs.close()
    text = FORMAT.dump(dev, "/TREE.V")
    assert "ADTNUM" in text and "TREE.V" in text and "hi_record" in text and "(ALLOCMAP)" in text
    img = tmp_path / "d.img"
    img.write_bytes(dev.snapshot())
    capsys.readouterr()
    assert cli(["dump", str(img), "TREE.V"]) == 0
    assert "level 1: pointer blocks" in capsys.readouterr().out


def test_file_whose_fst_moved_on_delete_is_written_in_its_new_slot() -> None:
    """The reference keeps writing an open file to its old slot after a delete moved its FST."""
    dev = _disk(bs=512)
    fs = FORMAT.open(dev)
    for n in ("/A.X", "/B.X", "/C.X"):
        fs.create(n)
        fs.write(n, 0, n.encode() * 10)
    assert fs.read("/C.X", 0, 4) == b"/C.X"  # C's block map is cached now
    fs.unlink("/A.X")  # C's FST moves into A's slot
    assert fs.dir.slots[2].display_name() == "C.X"
    fs.write("/C.X", 40, b"more")
    again = FORMAT.open(dev)
    assert again.read("/C.X", 0, 100) == b"/C.X" * 10 + b"more"
    assert [s.name for s in again.listdir()] == ["C.X", "B.X"]
    _clean(dev)


@pytest.mark.parametrize("text", [False, True])
def test_huge_sizes_are_refused_before_memory_is_used(text: bool) -> None:
    dev = _disk(bs=1024, size=1 << 20)
    fs = FORMAT.open(dev, text=text)
    fs.create("/H.X")
    fs.write("/H.X", 0, b"abc\n")
    # Past what 32-bit block numbers address: EFBIG; past this disk only: ENOSPC (docs/errno.md).
    for call, error in ((lambda: fs.truncate("/H.X", 10**15), FileTooBig),
                        (lambda: fs.write("/H.X", 10**15, b"x"), FileTooBig),
                        (lambda: fs.truncate("/H.X", 3 << 20), NoSpace)):
        with pytest.raises(error):
            call()
    assert fs.read("/H.X", 0, 10) == b"abc\n"
    assert fs.read("/H.X", 10**15, 10**12) == b""
    _clean(dev)


def test_nearly_full_disk_append_to_a_big_file() -> None:
    """Copy-on-write needs a few pointer blocks per change; running out mid-way rolls back."""
    dev = _disk(bs=512, size=1 << 20)
    fs = FORMAT.open(dev)
    fs.create("/BIG.V")
    fs.write("/BIG.V", 0, b"b" * 60000)  # ~118 blocks, 2 pointer levels
    fs.create("/FILL.V")
    while True:
        try:
            fs.write("/FILL.V", fs.stat("/FILL.V").size, b"f" * 500)
        except NoSpace:
            break
    assert fs.amap.free < 10
    appended = 0
    for _ in range(20):
        try:
            fs.write("/BIG.V", 60000 + appended, b"x")
            appended += 1
        except NoSpace:
            break
    assert FORMAT.open(dev).read("/BIG.V", 0, 10**6) == b"b" * 60000 + b"x" * appended
    _clean(dev)
