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
