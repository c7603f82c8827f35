"""MmioBlockDevice: the rawdev interface over a memory window, so formats run on a Region."""

from __future__ import annotations

import pytest

from fsproto.blockdev.mmio import MmioBlockDevice
from fsproto.errors import GeometryError, OutOfRange, ReadOnlyError
from fsproto.hw import malloc, mmap


@pytest.fixture
def buf():
    b = malloc(1 << 20)
    yield b
    b.free()


def test_blocks_land_at_their_byte_offsets(buf):
    dev = MmioBlockDevice(buf.region, block_size=512)
    assert (dev.num_blocks, dev.block_size, dev.read_only) == (2048, 512, False)
    dev.write(7, b"\x11" * 512 + b"\x22" * 512)
    assert buf.read(7 * 512, 1024) == b"\x11" * 512 + b"\x22" * 512
    buf.write(100 * 512, b"from the other side")
    assert dev.read(100).startswith(b"from the other side")
    assert dev.read(7, 2)[510:514] == b"\x11\x11\x22\x22"


def test_bounds_and_read_only_follow_the_interface(buf, tmp_path):
    dev = MmioBlockDevice(buf.region, block_size=4096)
    with pytest.raises(OutOfRange):
        dev.read(256)
    with pytest.raises(OutOfRange):
        dev.write(255, bytes(8192))
    image = tmp_path / "img"
    image.write_bytes(b"\xab" * 8192)
    with mmap(str(image)) as ro_region:
        ro = MmioBlockDevice(ro_region, block_size=512)
        assert ro.read_only and ro.read(15) == b"\xab" * 512
        with pytest.raises(ReadOnlyError):
            ro.write(0, bytes(512))
    assert MmioBlockDevice(buf.region, read_only=True).read_only


def test_geometry_is_checked(buf):
    with pytest.raises(GeometryError):
        MmioBlockDevice(buf.region.sub(0, 1000))
    with pytest.raises(GeometryError):
        MmioBlockDevice(buf.region.sub(0, 256))


def test_file_backed_window_writes_reach_the_file(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(64 * 512))
    with mmap(str(image), writable=True) as region, MmioBlockDevice(region) as dev:
        dev.write(3, b"Z" * 512)
        dev.flush()
    assert image.read_bytes()[3 * 512 : 4 * 512] == b"Z" * 512


def test_a_format_runs_on_a_memory_window(buf):
    from fsproto.formats import available

    if "cms" not in available():
        pytest.skip("CMS format not registered")
    fmt = available()["cms"]
    dev = MmioBlockDevice(buf.region, block_size=512)
    fmt.mkfs(dev)
    with fmt.open(dev) as fs:
        fs.create("/HELLO.TXT")
        fs.write("/HELLO.TXT", 0, b"written through a Region")
    with fmt.open(dev) as fs:
        assert fs.read("/HELLO.TXT", 0, 100) == b"written through a Region"
    assert fmt.probe(MmioBlockDevice(buf.region, read_only=True))
