"""Bad input for FAT: corrupt BPBs, chains that loop or leave the disk, directories inside
themselves -> typed errors naming the cluster; probe never raises; nothing hangs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fat_images
from fsproto.errors import FormatError, FsprotoError, UnknownFormat
from fsproto.formats.fat import FORMAT
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import MemoryDevice


def patched(dev: MemoryDevice, offset: int, data: bytes) -> MemoryDevice:
    raw = bytearray(dev.snapshot())
    raw[offset : offset + len(data)] = data
    return MemoryDevice.from_bytes(raw, name=dev.name)


# (what, offset in the boot sector, bytes, error) for FAT16 and FAT32 volumes
BPB_CASES = [
    ("no signature", 510, b"\0\0", UnknownFormat),
    ("sector size 0", 11, b"\0\0", UnknownFormat),
    ("sector size 3000", 11, (3000).to_bytes(2, "little"), UnknownFormat),
    ("0 sectors per cluster", 13, b"\0", FormatError),
    ("3 sectors per cluster", 13, b"\3", FormatError),
    ("0 reserved sectors", 14, b"\0\0", FormatError),
    ("0 FATs", 16, b"\0", FormatError),
    ("9 FATs", 16, b"\x09", FormatError),
    ("no total sectors", 19, b"\0\0" + b"\xf8" + b"\0\0\0\0\0\0\0\0\0\0\0\0\0" + b"\0\0\0\0", FormatError),
    ("volume larger than the device", 32, (0xFFFFFFF0).to_bytes(4, "little"), FormatError),
]


@pytest.mark.parametrize("fat", [16, 32])
@pytest.mark.parametrize("what,offset,data,error", BPB_CASES, ids=[c[0] for c in BPB_CASES])
def test_corrupt_bpb_is_a_typed_error(fat: int, what: str, offset: int, data: bytes, error: type) -> None:
    dev = fat_images.base_image(fat)
    if what == "volume larger than the device" and fat == 16:
        data = b"\0\0" + b"\xf8" + b"\0\0" * 6 + (0xFFFFFFF0).to_bytes(4, "little")  # TotSec16 0, TotSec32 huge
        offset = 19
    bad = patched(dev, offset, data)
    assert FORMAT.probe(bad) is False
    with pytest.raises(error) as info:
        FORMAT.open(bad)
    assert info.value.device == bad.name and info.value.block == 0 and info.value.offset is not None
    with pytest.raises(error):
        FORMAT.fsck(bad)


def test_fat32_bad_root_cluster_and_wrong_type() -> None:
    dev = fat_images.base_image(32)
    with pytest.raises(FormatError, match="BPB_RootClus") as info:
        FORMAT.open(patched(dev, 44, (0x0FFFFFF0).to_bytes(4, "little")))
    assert info.value.offset == 44
    # a FAT32 cluster count but a FAT16-style BPB_FATSz16: the type contradicts the BPB
    with pytest.raises(FormatError, match="FAT32"):
        FORMAT.open(patched(dev, 22, b"\x10\0"))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case,op", [
    ("chain-loop", "read"), ("chain-loop", "unlink"), ("chain-off-disk", "read"), ("chain-into-free", "read"),
    ("dir-contains-itself", "list"), ("dir-chain-loop", "list"),
])
def test_broken_chains_name_the_cluster(case: str, op: str) -> None:
    dev, cluster = fat_images.CORRUPTIONS[case]()
    fs = FORMAT.open(dev)
    with pytest.raises(FormatError) as info:
        if op == "read":
            fs.read("/a.txt", 0, 1 << 20)
        elif op == "unlink":
            fs.unlink("/a.txt")
        else:
            fs.listdir("/dir/sub" if case == "dir-contains-itself" else "/dir")
            fs.listdir("/dir/sub/sub")
    assert info.value.block == cluster and f"cluster {cluster}" in str(info.value)
    assert fs.read("/b.txt", 0, 100) == b"B" * 100  # the rest of the volume still reads
    if op == "unlink":
        assert fs.exists("/a.txt")  # a refused unlink changed nothing


def test_directory_inside_itself_is_not_walked_forever() -> None:
    dev, cluster = fat_images.dir_contains_itself()
    fs = FORMAT.open(dev)
    # /dir/sub is /dir again: one more level down must be refused, not recursed into.
    with pytest.raises(FormatError, match=f"cluster {cluster}"):
        fs.stat("/dir/sub/sub/c.txt")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=512, max_size=512))
def test_probe_never_raises_on_garbage(sector: bytes) -> None:
    dev = MemoryDevice(64)
    dev.write(0, sector[:510] + b"\x55\xaa")
    ok = FORMAT.probe(dev)
    try:
        Volume(dev)
    except FsprotoError:
        assert not ok
    else:
        assert ok


def _base(fat: int) -> tuple[bytes, int]:
    """The image and the length of its metadata head (boot, FATs, root, first directory clusters)."""
    dev = fat_images.base_image(fat)
    vol = Volume(dev)
    return dev.snapshot(), vol.cluster_offset(2) + 16 * vol.geo.cluster_size


_BASE = {fat: _base(fat) for fat in (12, 32)}


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fat=st.sampled_from([12, 32]), hits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                    min_size=1, max_size=12))
def test_metadata_corruption_gives_only_typed_errors(fat: int, hits: list[tuple[float, int]]) -> None:
    """Random bytes over the boot sector, FATs, root and first directories: every read-side
    operation and fsck either works or raises an fsproto error."""
    image, head = _BASE[fat]
    raw = bytearray(image)
    for where, val in hits:
        raw[int(where * (head - 1))] = val
    dev = MemoryDevice.from_bytes(raw)
    try:
        fs = FORMAT.open(dev)
    except FsprotoError:
        return
    stack = ["/"]
    while stack:
        path = stack.pop()
        try:
            entries = fs.listdir(path)
        except FsprotoError:
            continue
        for st_ in entries[:50]:
            p = path.rstrip("/") + "/" + st_.name
            try:
                if st_.is_dir:
                    if p.count("/") < 8:
                        stack.append(p)
                else:
                    fs.read(p, 0, 1 << 20)
            except FsprotoError:
                pass
    try:
        FORMAT.fsck(dev)
        FORMAT.fsck(dev, repair=True)
    except FsprotoError:
        pass
