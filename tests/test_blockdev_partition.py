"""MBR and GPT tables made by sfdisk/sgdisk, compared with what those tools print; lying tables."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsproto.blockdev import gpt, mbr
from fsproto.errors import FsprotoError, GeometryError, PartitionTableError, UsageError
from fsproto.rawdev import ImageFile, MemoryDevice, SubDevice, open_device, read_partition_table

MiB = 1024 * 1024


def sfdisk_json(path: Path | str) -> dict:
    out = subprocess.run(["sfdisk", "--json", str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["partitiontable"]


def make_mbr(path: Path, script: str, size: int = 64 * MiB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "-q", str(path)], input=script, text=True, check=True, capture_output=True)
    return path


def make_gpt(path: Path, *args: str, size: int = 64 * MiB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["sgdisk", *args, str(path)], check=True, capture_output=True)
    return path


MBR_SCRIPT = "label: dos\n,8M,83,*\n,8M,82\n,,5\n,4M,83\n,4M,c\n,2M,83\n"


@pytest.fixture(scope="module")
def mbr_image(tmp_path_factory) -> Path:
    return make_mbr(tmp_path_factory.mktemp("mbr") / "mbr.img", MBR_SCRIPT)


@pytest.fixture(scope="module")
def gpt_image(tmp_path_factory) -> Path:
    return make_gpt(
        tmp_path_factory.mktemp("gpt") / "gpt.img",
        "-n", "1:2048:+8M", "-t", "1:8300", "-c", "1:root",
        "-n", "2:0:+4M", "-t", "2:ef00", "-c", "2:EFI system",
        "-n", "4:0:+1M", "-t", "4:8200",
        "-n", "3:0:0",
    )


def as_sfdisk(table) -> list[dict]:
    """Our partitions in sfdisk --json's shape, for a direct comparison."""
    out = []
    for p in table.partitions:
        d = {"node": f"X{p.number}", "start": p.start, "size": p.size, "type": p.type}
        if p.bootable:
            d["bootable"] = True
        if p.uuid:
            d["uuid"] = p.uuid
        if p.name:
            d["name"] = p.name
        out.append(d)
    return out


def normalise(tool: dict) -> list[dict]:
    return [dict(p, node="X" + p["node"].rsplit("img", 1)[1]) for p in tool["partitions"]]


# -- agreement with the system's tools ---------------------------------------------------------
def test_mbr_with_logicals_matches_sfdisk(mbr_image):
    with ImageFile(mbr_image) as dev:
        table = read_partition_table(dev)
    tool = sfdisk_json(mbr_image)
    assert table.scheme == "mbr" and tool["label"] == "dos"
    assert table.disk_id == tool["id"]
    assert as_sfdisk(table) == normalise(tool)
    assert [p.kind for p in table.partitions] == ["primary", "primary", "extended", "logical", "logical", "logical"]


def test_gpt_matches_sfdisk_and_sgdisk(gpt_image):
    with ImageFile(gpt_image) as dev:
        table = read_partition_table(dev)
    tool = sfdisk_json(gpt_image)
    assert table.scheme == "gpt" and table.disk_id == tool["id"]
    assert (table.first_usable, table.last_usable) == (tool["firstlba"], tool["lastlba"])
    assert as_sfdisk(table) == normalise(tool)
    assert table.notes == [] and table.backup_lba == dev.num_blocks - 1
    # sgdisk -p: "Number Start End Size Code Name" rows.
    printed = subprocess.run(["sgdisk", "-p", str(gpt_image)], check=True, capture_output=True, text=True).stdout
    rows = printed.split("Name\n", 1)[1].strip().splitlines()
    ours = {p.number: p for p in table.partitions}
    assert len(rows) == len(ours)
    for row in rows:
        fields = row.split(None, 6)
        p = ours[int(fields[0])]
        assert (int(fields[1]), int(fields[2])) == (p.start, p.end)
        assert (fields[6] if len(fields) > 6 else "") == p.name


def test_gpt_on_4k_sectors_made_on_a_4k_loop_device(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop device")
    img = tmp_path / "4k.img"
    img.write_bytes(bytes(32 * MiB))
    node = subprocess.run(["losetup", "-f", "--show", "--sector-size", "4096", str(img)],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["sgdisk", "-n", "1:256:+8M", "-n", "2:0:0", node], check=True, capture_output=True)
        tool = sfdisk_json(node)
    finally:
        subprocess.run(["losetup", "-d", node], check=False)
    with ImageFile(img) as dev:  # a plain 512-byte view of the image
        table = read_partition_table(dev)
    assert tool["sectorsize"] == 4096 and table.sector_size == 4096
    assert [(p.start, p.size) for p in table.partitions] == [(p["start"], p["size"]) for p in tool["partitions"]]
    with open_device(f"{img}@1") as part:
        assert part.size == tool["partitions"][0]["size"] * 4096


# -- opening partitions ------------------------------------------------------------------------
def test_open_device_at_n_and_partition_argument(mbr_image, gpt_image):
    for image in (mbr_image, gpt_image):
        tool = sfdisk_json(image)
        first = tool["partitions"][0]
        with open_device(f"{image}@1") as a, open_device(str(image), partition=1) as b:
            assert a.num_blocks == b.num_blocks == first["size"]
            assert a.name == f"{image}@1"
            with open(image, "rb") as f:
                f.seek(first["start"] * 512)
                assert a.read(0, 4) == f.read(4 * 512) == b.read(0, 4)
    logical = sfdisk_json(mbr_image)["partitions"][4]  # partition 6
    with open_device(f"{mbr_image}@6", block_size=4096) as dev:
        assert dev.block_size == 4096 and dev.num_blocks == logical["size"] * 512 // 4096


def test_writes_stay_inside_the_partition(tmp_path):
    img = make_mbr(tmp_path / "w.img", "label: dos\n,1M,83\n,1M,83\n", size=4 * MiB)
    before = img.read_bytes()
    with open_device(f"{img}@2", writable=True) as dev:
        dev.write(0, b"\x99" * 512)
        with pytest.raises(FsprotoError):
            dev.write(dev.num_blocks, b"\x99" * 512)
    after = img.read_bytes()
    start = sfdisk_json(img)["partitions"][1]["start"] * 512
    assert after[start : start + 512] == b"\x99" * 512
    assert after[:start] == before[:start] and after[start + 512 :] == before[start + 512 :]


def test_partition_errors(mbr_image, tmp_path):
    with pytest.raises(UsageError, match="no partition 4"):
        open_device(f"{mbr_image}@4")  # slot 4 is empty: numbers keep their slot
    with pytest.raises(UsageError, match="extended"):
        open_device(f"{mbr_image}@3")
    with pytest.raises(UsageError, match="--partition"):
        open_device(f"{mbr_image}@1", partition=2)
    bare = tmp_path / "bare.img"
    bare.write_bytes(bytes(MiB))
    subprocess.run(["mkfs.vfat", str(bare)], check=True, capture_output=True)
    with ImageFile(bare) as dev:
        assert read_partition_table(dev) is None  # a FAT boot sector is not an MBR
    with pytest.raises(UsageError, match="no partition table"):
        open_device(f"{bare}@1")
    odd = make_mbr(tmp_path / "odd.img", "label: dos\nstart=2048,size=1001,type=83\n", size=2 * MiB)
    with pytest.raises(GeometryError):
        open_device(f"{odd}@1", block_size=4096)
    literal = tmp_path / "a@1"
    literal.write_bytes(bytes(1024))
    with open_device(str(literal)) as dev:  # an existing path wins over the @N syntax
        assert dev.num_blocks == 2


# -- lying and corrupt tables -----------------------------------------------------------------
def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def table_error(path: Path) -> PartitionTableError:
    with ImageFile(path) as dev, pytest.raises(PartitionTableError) as ei:
        read_partition_table(dev)
    assert str(path) in str(ei.value)
    return ei.value


def test_mbr_entry_past_the_end(tmp_path):
    img = make_mbr(tmp_path / "t.img", "label: dos\n,,83\n", size=8 * MiB)
    os.truncate(img, 4 * MiB)
    err = table_error(img)
    assert err.lba == 0 and "past the end" in str(err)


def test_mbr_overlap(tmp_path):
    img = make_mbr(tmp_path / "o.img", "label: dos\n,2M,83\n,2M,83\n", size=8 * MiB)
    patch(img, 446 + 16 + 8, struct.pack("<I", 3000))  # entry 2 now starts inside entry 1
    err = table_error(img)
    assert err.lba == 0 and "overlap" in str(err)


def test_ebr_loop_is_caught(mbr_image, tmp_path):
    img = tmp_path / "loop.img"
    img.write_bytes(mbr_image.read_bytes())
    tool = sfdisk_json(img)
    ext_start = tool["partitions"][2]["start"]
    # The second EBR sits before logical 6; point its link back to the first EBR.
    second_ebr = tool["partitions"][4]["start"] - 2048
    patch(img, second_ebr * 512 + 446 + 16 + 8, struct.pack("<I", 0))
    err = table_error(img)
    assert "loops" in str(err) and err.lba == ext_start


def test_ebr_chain_length_is_bounded():
    dev = MemoryDevice(600, 512)
    sector = bytearray(512)
    sector[510:] = b"\x55\xaa"
    sector[446 + 4] = 0x05
    sector[446 + 8 : 446 + 16] = struct.pack("<II", 1, 598)
    dev.write(0, sector)
    for i in range(1, 599):  # each EBR only links to the next: no loop, just too long
        ebr = bytearray(512)
        ebr[510:] = b"\x55\xaa"
        ebr[446 + 16 + 4] = 0x05
        ebr[446 + 16 + 8 : 446 + 16 + 16] = struct.pack("<II", i, 1)
        dev.write(i, ebr)
    with pytest.raises(PartitionTableError, match="longer than"):
        read_partition_table(dev)


def fix_gpt_crcs(path: Path) -> None:
    """Recompute the entry-array and header CRCs after an edit (a lying but well-formed table)."""
    data = bytearray(path.read_bytes())
    hdr = data[512:1024]
    count, esize = struct.unpack_from("<II", hdr, 80)
    elba = struct.unpack_from("<Q", hdr, 72)[0]
    struct.pack_into("<I", hdr, 88, zlib.crc32(data[elba * 512 : elba * 512 + count * esize]))
    struct.pack_into("<I", hdr, 16, 0)
    struct.pack_into("<I", hdr, 16, zlib.crc32(hdr[:92]))
    patch(path, 512, bytes(hdr))


@pytest.fixture
def gpt_copy(gpt_image, tmp_path) -> Path:
    img = tmp_path / "g.img"
    img.write_bytes(gpt_image.read_bytes())
    return img


def test_gpt_bad_header_crc_names_lba_1_and_the_backup(gpt_copy):
    patch(gpt_copy, 512 + 56, b"\xff")  # inside DiskGUID
    err = table_error(gpt_copy)
    assert err.lba == 1 and "CRC32" in str(err) and "backup header" in str(err) and "is intact" in str(err)


def test_gpt_bad_entry_crc(gpt_copy):
    patch(gpt_copy, 1024 + 60, b"X")  # a byte of entry 1's name
    err = table_error(gpt_copy)
    assert err.lba == 2 and "entry array" in str(err)


def test_gpt_overlap_and_past_usable(gpt_copy):
    patch(gpt_copy, 1024 + 128 + 32, struct.pack("<Q", 4096))  # entry 2 starts inside entry 1
    fix_gpt_crcs(gpt_copy)
    err = table_error(gpt_copy)
    assert "overlap" in str(err) and err.lba == 2
    patch(gpt_copy, 1024 + 128 + 32, struct.pack("<QQ", 18432, 10**9))  # ends far past the disk
    fix_gpt_crcs(gpt_copy)
    err = table_error(gpt_copy)
    assert "usable range" in str(err) and err.lba == 2


def test_gpt_truncated_image(gpt_copy):
    os.truncate(gpt_copy, 32 * MiB)
    err = table_error(gpt_copy)
    assert "truncated" in str(err) and err.lba == 1


def test_gpt_lying_entry_count_is_bounded(gpt_copy):
    patch(gpt_copy, 512 + 80, struct.pack("<I", 0xFFFFFFFF))
    fix_gpt_crcs(gpt_copy)
    assert "implausibly large" in str(table_error(gpt_copy))


def test_gpt_corrupt_backup_is_noted_not_fatal(gpt_copy):
    size = gpt_copy.stat().st_size
    patch(gpt_copy, size - 512 + 40, b"\xff\xff")
    with ImageFile(gpt_copy) as dev:
        table = read_partition_table(dev)
    assert len(table.partitions) == 4
    assert table.notes and "backup GPT header" in table.notes[0] and "CRC32" in table.notes[0]


# -- fuzz: garbage never escapes as anything but our errors -----------------------------------
@pytest.fixture(scope="module")
def small_tables(tmp_path_factory) -> list[bytes]:
    """1 MiB images (MBR with two logicals, GPT with three entries) so each example is cheap."""
    d = tmp_path_factory.mktemp("small")
    m = make_mbr(
        d / "m.img",
        "label: dos\nstart=1,size=200,type=83\nstart=201,size=1000,type=5\n"
        "start=202,size=300,type=83\nstart=504,size=300,type=83\n",
        size=MiB,
    )
    g = make_gpt(d / "g.img", "-a", "8", "-n", "1:40:+100K", "-n", "2:0:+100K", "-n", "3:0:0", size=MiB)
    images = [m.read_bytes(), g.read_bytes()]
    for raw in images:  # the unmutated images parse, so mutations start from a valid table
        assert read_partition_table(MemoryDevice.from_bytes(raw)).partitions
    return images


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 1),
    edits=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=8),
    far=st.lists(st.tuples(st.integers(0, 2047), st.integers(0, 511), st.integers(0, 255)), max_size=4),
)
def test_mutated_tables_raise_only_typed_errors(small_tables, which, edits, far):
    data = bytearray(small_tables[which])
    for off, val in edits:  # the MBR and the GPT header
        data[off] = val
    for sector, off, val in far:  # EBRs, GPT entries, the backup header
        data[sector * 512 + off] = val
    dev = MemoryDevice.from_bytes(bytes(data))
    try:
        table = read_partition_table(dev)
    except PartitionTableError as e:
        assert e.device == "memory"
        return
    if table is not None:
        for p in table.partitions:  # whatever was accepted really fits the device
            assert p.offset_bytes + p.size_bytes <= dev.size
            if p.kind != "extended":
                SubDevice.from_bytes(dev, p.offset_bytes, p.size_bytes, owns_inner=False).read(0, 1)


def common(struct_, obj: dict, size: int) -> None:
    """Round-trip one struct: build, parse back, sizeof (construct's declarativeunittest style)."""
    raw = struct_.build(obj)
    assert len(raw) == struct_.sizeof() == size
    parsed = struct_.parse(raw)
    assert {k: parsed[k] for k in obj} == obj
    assert struct_.build(parsed) == raw


MBR_ENTRY = dict(status=0x80, chs_first=b"\0\1\2", type=0x83, chs_last=b"\3\4\5", lba_first=2048, num_sectors=99)


@pytest.mark.parametrize(
    "struct_, obj, size",
    [
        (mbr.MBREntry, MBR_ENTRY, 16),
        (mbr.MBRSector, dict(bootcode=bytes(440), disk_signature=0xDEADBEEF, reserved_444=b"\0\0",
                             entries=[MBR_ENTRY] * 4), 512),
        (gpt.GPTHeader, dict(Revision=0x10000, HeaderSize=92, HeaderCRC32=1, reserved_20=0, MyLBA=1,
                             AlternateLBA=99, FirstUsableLBA=34, LastUsableLBA=66, DiskGUID=bytes(range(16)),
                             PartitionEntryLBA=2, NumberOfPartitionEntries=128, SizeOfPartitionEntry=128,
                             PartitionEntryArrayCRC32=7), 92),
        (gpt.GPTEntry, dict(PartitionTypeGUID=bytes(range(16)), UniquePartitionGUID=bytes(16), StartingLBA=34,
                            EndingLBA=40, Attributes=1 << 63, PartitionName="root".encode("utf-16-le").ljust(72, b"\0")),
         128),
    ],
)
def test_structs_round_trip(struct_, obj, size):
    common(struct_, obj, size)


def test_build_mbr_is_what_sfdisk_reads(tmp_path):
    img = tmp_path / "b.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
        f.write(mbr.build_mbr([(2048, 4096, 0x83, True), (6144, 8192, 0x0C, False)], 0x1234ABCD))
    tool = sfdisk_json(img)
    assert tool["id"] == "0x1234abcd"
    assert [(p["start"], p["size"], p["type"], p.get("bootable", False)) for p in tool["partitions"]] == [
        (2048, 4096, "83", True), (6144, 8192, "c", False)]
