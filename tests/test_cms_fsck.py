"""fsck cases, e2fsprogs style: each case is a directory tests/cms/<case>/ holding ``name`` (what
the case is), ``expect.1`` (the repairing run's output and exit status) and ``expect.2`` (the rerun).
The damaged image is not committed: :data:`CASES` below is its generator, run by every test run.
Set FSPROTO_REGEN_EXPECT=1 to rewrite the expect files after a deliberate output change.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable

import pytest

from fsproto.cli import cli
from fsproto.errors import FormatError, InvalidName
from fsproto.formats.cms import FORMAT
from fsproto.rawdev import ImageFile, MemoryDevice

CASE_DIR = Path(__file__).parent / "cms"
BS = 512
CLOCK = lambda: 1_700_000_000.0  # noqa: E731


def _base() -> tuple[bytes, dict[str, int]]:
    """A 512-byte-block disk: 20 files (3 directory blocks), some data; returns image and name->slot."""
    dev = MemoryDevice(num_blocks=(1 << 20) // 512, block_size=512)
    FORMAT.mkfs(dev, block_size=BS, label="FSCK", clock=CLOCK)
    fs = FORMAT.open(dev, clock=CLOCK)
    for i in range(20):
        name = f"/FILE{i:02}.DATA"
        fs.create(name)
        if i % 4 == 0:
            fs.setxattr(name, "user.record_format", b"F")
            fs.setxattr(name, "user.record_lrecl", b"100")
        fs.write(name, 0, bytes([65 + i]) * (200 + 300 * i))
    slots = {n: fs.dir.index[fs._key("/" + n)] for n in (s.name for s in fs.listdir())}
    fs.close()
    return dev.snapshot(), slots


def _slot_off(img: bytes, slot: int) -> int:
    """Byte offset of directory slot *slot* (via the directory's tree)."""
    fs = FORMAT.open(MemoryDevice.from_bytes(img, read_only=True))
    j, off = divmod(slot * 64, BS)
    return (fs.dir.tree.leaves[j] - 1) * BS + off


def _file_blocks(img: bytes, name: str) -> list[int]:
    fs = FORMAT.open(MemoryDevice.from_bytes(img, read_only=True))
    return [b for b in fs.filemap(fs._key("/" + name)).tree.leaves if b]


def _set_bits(img: bytearray, blocks: list[int], on: bool) -> None:
    fs = FORMAT.open(MemoryDevice.from_bytes(bytes(img), read_only=True))
    map_block = fs.amap.tree.leaves[0]
    for b in blocks:
        i = b - 1
        pos = (map_block - 1) * BS + (i >> 3)
        img[pos] = img[pos] | (0x80 >> (i & 7)) if on else img[pos] & ~(0x80 >> (i & 7))


def leak(img: bytearray, slots) -> None:
    _set_bits(img, [1500, 1501, 1502, 1700], True)


def missing_bits(img: bytearray, slots) -> None:
    _set_bits(img, _file_blocks(bytes(img), "FILE03.DATA")[:2], False)


def adtused(img: bytearray, slots) -> None:
    struct.pack_into(">I", img, 2 * BS + 32, 7)


def director_stale(img: bytearray, slots) -> None:
    struct.pack_into(">I", img, 3 * BS + 44, 1)  # as the reference leaves it


def interrupted_delete(img: bytearray, slots) -> None:
    last = max(slots.values())
    s = slots["FILE09.DATA"]
    o_s, o_l = _slot_off(bytes(img), s), _slot_off(bytes(img), last)
    img[o_s : o_s + 64] = img[o_l : o_l + 64]  # the last FST copied, the count not yet lowered


def interrupted_rename(img: bytearray, slots) -> None:
    s, t = slots["FILE12.DATA"], slots["FILE05.DATA"]
    o_s, o_t = _slot_off(bytes(img), s), _slot_off(bytes(img), t)
    img[o_s : o_s + 8] = img[o_t : o_t + 8]  # FILE12 renamed over FILE05, with the replace mark
    img[o_s + 60] = 0x01


def directory_hole(img: bytearray, slots) -> None:
    o = _slot_off(bytes(img), slots["FILE07.DATA"])
    img[o : o + 64] = bytes(64)


def cross_link(img: bytearray, slots) -> None:
    o = _slot_off(bytes(img), slots["FILE16.DATA"])
    fop = struct.unpack_from(">I", img, o + 40)[0]
    struct.pack_into(">I", img, (fop - 1) * BS, _file_blocks(bytes(img), "FILE00.DATA")[0])  # F files, both readable


def unreadable(img: bytearray, slots) -> None:
    o = _slot_off(bytes(img), slots["FILE02.DATA"])
    other = _file_blocks(bytes(img), "FILE10.DATA")
    fop = struct.unpack_from(">I", img, o + 40)[0]
    struct.pack_into(">I", img, (fop - 1) * BS, other[0])  # FILE02 (V) now starts in FILE10's block


def bad_name(img: bytearray, slots) -> None:
    o = _slot_off(bytes(img), slots["FILE04.DATA"])
    img[o + 4] = 0x5C  # '*'


def v_pointer(img: bytearray, slots) -> None:
    o = _slot_off(bytes(img), slots["FILE15.DATA"])
    fop = struct.unpack_from(">I", img, o + 40)[0]
    struct.pack_into(">I", img, (fop - 1) * BS + 12 + 8, 77)  # entry 1's disp


def label_dop(img: bytearray, slots) -> None:
    struct.pack_into(">I", img, 2 * BS + 16, 6)


CASES: dict[str, Callable] = {f.__name__: f for f in (
    leak, missing_bits, adtused, director_stale, interrupted_delete, interrupted_rename, directory_hole,
    cross_link, unreadable, bad_name, v_pointer, label_dop)}


def _contents(fs) -> dict[str, bytes]:
    out = {}
    for s in fs.listdir():
        try:
            out[s.name] = fs.read("/" + s.name, 0, 1 << 20)
        except (InvalidName, FormatError):  # damaged: listed, but cannot be looked up or read
            out[s.name] = b"?"
    return out


def _run(img: Path, capsys) -> str:
    capsys.readouterr()
    status = cli(["fsck", "--repair", "--format", "cms", str(img)])
    out = capsys.readouterr().out.replace(str(img), "IMAGE")
    return out + f"Exit status is {status}\n"


@pytest.fixture(scope="module")
def base():
    return _base()


@pytest.mark.parametrize("case", sorted(CASES))
def test_fsck_case(case: str, base, tmp_path, capsys) -> None:
    img_bytes, slots = base
    img = bytearray(img_bytes)
    CASES[case](img, slots)
    path = tmp_path / "image.img"
    path.write_bytes(bytes(img))
    before = {}
    if case not in ("label_dop",):
        with ImageFile(path) as dev:
            fs = FORMAT.open(dev)
            before = _contents(fs)
    outs = [_run(path, capsys), _run(path, capsys)]
    d = CASE_DIR / case
    if os.environ.get("FSPROTO_REGEN_EXPECT"):
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(CASES[case].__doc__ or case.replace("_", " ") + "\n")
        for i, out in enumerate(outs, 1):
            (d / f"expect.{i}").write_text(out)
    assert outs[0] == (d / "expect.1").read_text()
    assert outs[1] == (d / "expect.2").read_text()
    fixable = outs[1].endswith("Exit status is 0\n")
    if fixable:
        with ImageFile(path) as dev:
            fs = FORMAT.open(dev)
            after = _contents(fs)
        assert after == before  # repair never changes what a file holds
        assert not fs.dir.anomalies


def test_every_case_directory_has_a_generator() -> None:
    assert sorted(p.name for p in CASE_DIR.iterdir() if p.is_dir()) == sorted(CASES)
