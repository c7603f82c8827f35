"""readinto fills a caller's buffer with exactly what read returns, on every device shape a
format reads through (image file, sector-size adapter, window, the in-memory default path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fsproto.errors import DeviceError, OutOfRange
from fsproto.rawdev import BlockSizeAdapter, ImageFile, MemoryDevice, SubDevice


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "d.img"
    p.write_bytes(os.urandom(64 * 4096))
    return p


def _devices(image: Path):
    img = ImageFile(image)
    mem = MemoryDevice(64 * 8)
    mem.write(0, image.read_bytes())
    return [img, BlockSizeAdapter(img, 4096, owns_inner=False), SubDevice(img, 16, 64, owns_inner=False), mem]


def test_readinto_equals_read(image: Path) -> None:
    for dev in _devices(image):
        bs = dev.block_size
        for lba, count in ((0, 1), (3, 5), (dev.num_blocks - 2, 2)):
            buf = bytearray(count * bs)
            assert dev.readinto(lba, memoryview(buf)) == len(buf)
            assert bytes(buf) == dev.read(lba, count), (dev, lba, count)


def test_readinto_refuses_partial_blocks_and_the_end(image: Path) -> None:
    for dev in _devices(image):
        with pytest.raises(DeviceError):
            dev.readinto(0, bytearray(dev.block_size + 1))
        with pytest.raises(OutOfRange):
            dev.readinto(dev.num_blocks - 1, bytearray(2 * dev.block_size))


def test_fat_readinto_equals_read_at_any_offset(tmp_path: Path) -> None:
    """The FAT view's in-place read (aligned runs via the device, unaligned ends copied) returns
    the bytes read() does, for a file mtools wrote over non-contiguous clusters."""
    import random
    import subprocess

    from fsproto.formats.fat import FORMAT

    img = tmp_path / "fat.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.vfat", "-F", "16", "-s", "1", str(img)], check=True, capture_output=True)
    for name, size in (("a.bin", 3000), ("b.bin", 70_001), ("a2.bin", 5)):
        (tmp_path / name).write_bytes(os.urandom(size))
        subprocess.run(["mcopy", "-i", str(img), str(tmp_path / name), "::/"], check=True)
    subprocess.run(["mdel", "-i", str(img), "::/a.bin"], check=True)
    (tmp_path / "c.bin").write_bytes(os.urandom(200_003))  # fills the hole a.bin left, then more
    subprocess.run(["mcopy", "-i", str(img), str(tmp_path / "c.bin"), "::/"], check=True)
    rnd = random.Random(5)
    with ImageFile(img) as dev, FORMAT.open(dev) as fs:
        for name, data in (("/b.bin", (tmp_path / "b.bin").read_bytes()), ("/c.bin", (tmp_path / "c.bin").read_bytes())):
            for _ in range(200):
                off, n = rnd.randrange(len(data) + 10), rnd.randrange(1, 70_000)
                buf = bytearray(n)
                got = fs.readinto(name, off, buf)
                assert bytes(buf[:got]) == fs.read(name, off, n) == data[off : off + n]
