"""FAT declarations and name/time codecs: every struct round-trips (parse, build, sizeof) in
plain and compiled construct modes; LFN checksums, 8.3 names and ~N tails, FAT12 packing."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsproto.errors import InvalidName, NameTooLong, NoSpace
from fsproto.formats.fat import directory as d
from fsproto.formats.fat import layout
from fsproto.formats.fat.fat_table import FatTable
from fsproto.formats.fat.volume import Volume
from fsproto.formats.fat import FORMAT
from fsproto.rawdev import MemoryDevice

STRUCTS = [layout.BOOT_SECTOR_FAT16, layout.BOOT_SECTOR_FAT32, layout.FSINFO, layout.DIR_ENTRY, layout.LFN_ENTRY]


@pytest.fixture(params=[False, True], ids=["plain", "compiled"])
def compiled(request: pytest.FixtureRequest) -> bool:
    return request.param


def common(struct, raw: bytes, compiled: bool) -> None:
    """construct's declarativeunittest ``common()``: parse, build back, sizeof."""
    s = struct.compile() if compiled else struct
    obj = s.parse(raw)
    assert s.build(obj) == raw
    assert s.sizeof() == len(raw)


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.docs.split()[0] if s.docs else "struct")
def test_structs_round_trip(struct, compiled: bool) -> None:
    dev = MemoryDevice((40 << 20) // 512)
    FORMAT.mkfs(dev, fat=32, label="RT")
    with FORMAT.open(dev) as fs:
        fs.create("/A long name.txt")
    root = Volume(dev).read_clusters(2)
    samples = {
        layout.BOOT_SECTOR_FAT32: dev.read(0),
        layout.FSINFO: dev.read(1),
        layout.LFN_ENTRY: root[32:64],
        layout.DIR_ENTRY: root[64:96],
    }
    dev16 = MemoryDevice((16 << 20) // 512)
    FORMAT.mkfs(dev16, fat=16)
    samples[layout.BOOT_SECTOR_FAT16] = dev16.read(0)
    common(struct, samples[struct], compiled)


def test_fsinfo_signatures_are_checked() -> None:
    from construct import ConstError

    with pytest.raises(ConstError):
        layout.FSINFO.parse(bytes(512))


def test_lfn_checksums_match_what_mtools_writes(tmp_path) -> None:
    img = tmp_path / "m.img"
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    subprocess.run(["mkfs.vfat", "-F", "12", str(img)], check=True, capture_output=True)
    for name in ("Hello World.txt", "another long file name.data"):
        (tmp_path / name).write_bytes(b"x")
        subprocess.run(["mcopy", "-i", str(img), str(tmp_path / name), "::/"], check=True)
    dev = MemoryDevice.from_bytes(img.read_bytes())
    vol = Volume(dev)
    root = vol.read_bytes(vol.sector_offset(vol.geo.root_dir_sector), 32 * 16)
    checked = 0
    for i in range(16):
        slot = root[i * 32 : i * 32 + 32]
        if slot[0] and slot[11] == layout.ATTR_LONG_NAME and slot[0] & layout.LFN_LAST:
            n = slot[0] & 0x1F
            short = root[(i + n) * 32 : (i + n) * 32 + 11]
            assert d.lfn_checksum(short) == slot[13], short
            checked += 1
    assert checked == 2


def test_lfn_slots_round_trip_through_parse() -> None:
    name = "A file name longer than twenty six characters.txt"
    short = d.generate_short_name(name, set())
    assert short == b"AFILEN~1TXT"
    slots = d.build_lfn_slots(name, short)
    assert len(slots) == 4 and slots[0][0] == 0x44 and slots[-1][0] == 0x01
    entry = d.new_entry(short, name, layout.ATTR_ARCHIVE, 0, 0).build()
    parsed = d.parse_entries(b"".join(slots) + entry)
    assert [e.name for e in parsed] == [name] and parsed[0].first_slot == 0 and parsed[0].slot == 4


def test_orphan_and_mismatched_lfn_parts_fall_back_to_the_short_name() -> None:
    slots = d.build_lfn_slots("long name here.txt", b"LONGNA~1TXT")
    other = d.new_entry(b"OTHER   TXT", "OTHER.TXT", layout.ATTR_ARCHIVE, 0, 0).build()
    orphans: list[int] = []
    parsed = d.parse_entries(b"".join(slots) + other, orphans=orphans)
    assert [e.name for e in parsed] == ["OTHER.TXT"] and orphans == [0, 1]


@pytest.mark.parametrize("name,taken,want", [
    ("README.TXT", set(), b"README  TXT"),
    ("readme.txt", set(), b"README  TXT"),
    ("readme.txt", {b"README  TXT"}, b"README~1TXT"),
    ("My Document.docx", set(), b"MYDOCU~1DOC"),
    ("My Document.docx", {b"MYDOCU~1DOC"}, b"MYDOCU~2DOC"),
    (".profile", set(), b"PROFIL~1   "),
    ("a.b.c", set(), b"AB~1    C  "),
    ("naïve", set(), b"NA_VE~1    "),  # cp437 has no upper-case Ï: lossy, so a tail
    ("café", set(), b"CAF\x90       "),  # É is cp437 0x90: lossless, no tail
    ("日本語.txt", set(), b"___~1   TXT"),
])
def test_short_name_generation(name: str, taken: set[bytes], want: bytes) -> None:
    assert d.generate_short_name(name, taken) == want


def test_tails_run_past_nine() -> None:
    taken = {f"LONGFI~{i}TXT".encode() for i in range(1, 10)}
    assert d.generate_short_name("longfilename.txt", taken) == b"LONGF~10TXT"


@pytest.mark.parametrize("bad,err", [("", InvalidName), ("a/b", InvalidName), ("what?", InvalidName),
                                     ("trailing.", InvalidName), ("x" * 256, NameTooLong), ("..", InvalidName)])
def test_invalid_names(bad: str, err: type) -> None:
    with pytest.raises(err):
        d.check_long_name(bad)


@given(st.integers(315_532_800, 4_102_444_798).map(lambda s: s * 1_000_000_000))
def test_times_round_trip_to_two_seconds(ns: int) -> None:
    date, tm, _ = d.ns_to_fat(ns)
    assert 0 <= ns - d.fat_to_ns(date, tm) < 2_000_000_000


def test_fat12_entries_pack_and_unpack() -> None:
    dev = MemoryDevice((4 << 20) // 512)
    FORMAT.mkfs(dev, fat=12)
    fat = FatTable(Volume(dev))
    values = {n: (n * 37 + 5) & 0xFFF for n in range(2, fat.max_cluster + 1)}
    for n, v in values.items():
        fat.set(n, v)
    fat.flush()
    again = FatTable(Volume(dev))
    assert all(again.get(n) == v for n, v in values.items())
    assert again.read_copy(0) == again.read_copy(1)


def test_fixed_root_directory_fills_up_with_nospace() -> None:
    dev = MemoryDevice((16 << 20) // 512)
    FORMAT.mkfs(dev, fat=16)
    with FORMAT.open(dev) as fs:
        for i in range(512):  # BPB_RootEntCnt 512, one 8.3 entry each
            fs.create(f"/F{i:05d}.TXT")
        with pytest.raises(NoSpace):
            fs.create("/ONEMORE.TXT")
        assert len(fs.listdir("/")) == 512
