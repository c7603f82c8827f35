"""ImageFile and open_device on bad input: typed errors naming the path, nothing written."""

from __future__ import annotations

import os
import socket

import pytest

from fsproto.errors import (
    DeviceError,
    DeviceNotFound,
    GeometryError,
    NotADevice,
    OutOfRange,
    ReadOnlyError,
    UsageError,
)
from fsproto.rawdev import ImageFile, open_device


def test_create_and_reopen(tmp_path):
    path = tmp_path / "new.img"
    with ImageFile.create(path, 8192) as img:
        assert (img.num_blocks, img.read_only) == (16, False)
        img.write(15, b"\x01" * 512)
    assert os.stat(path).st_blocks * 512 < 8192  # sparse: only the written block is allocated
    with pytest.raises(DeviceError, match="already exists"):
        ImageFile.create(path, 8192)
    with ImageFile(path) as img:
        assert img.read(15) == b"\x01" * 512
        with pytest.raises(ReadOnlyError):
            img.write(0, bytes(512))


@pytest.mark.parametrize("bs", [0, -512, 3, 1000])
def test_bad_block_sizes_are_geometry_errors(tmp_path, bs):
    path = tmp_path / "a.img"
    path.write_bytes(bytes(4096))
    with pytest.raises(GeometryError) as ei:
        ImageFile(path, block_size=bs)
    assert str(path) in str(ei.value)
    with pytest.raises(GeometryError):
        ImageFile.create(tmp_path / "b.img", 4096, block_size=bs)
    with pytest.raises(GeometryError):
        open_device(str(path), block_size=bs)


def test_open_device_refusals(tmp_path):
    with pytest.raises(DeviceNotFound) as ei:
        open_device(str(tmp_path / "nope.img"))
    assert isinstance(ei.value, FileNotFoundError)
    with pytest.raises(NotADevice, match="directory"):
        open_device(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotADevice):
        open_device(str(fifo))  # must not block opening a FIFO
    sock_path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        with pytest.raises(NotADevice):
            open_device(str(sock_path))
    finally:
        s.close()
    odd = tmp_path / "odd.img"
    odd.write_bytes(bytes(1000))
    with pytest.raises(GeometryError, match="not a multiple"):
        open_device(str(odd))


def test_out_of_range_names_device_and_lba(tmp_path):
    path = tmp_path / "r.img"
    path.write_bytes(bytes(4096))
    with open_device(str(path), writable=True) as dev:
        for bad in ((8, 1), (7, 2), (-1, 1)):
            with pytest.raises(OutOfRange) as ei:
                dev.read(*bad)
            assert ei.value.lba == bad[0] and str(path) in str(ei.value)
        with pytest.raises(OutOfRange):
            dev.write(8, bytes(512))
        with pytest.raises(DeviceError, match="not a multiple"):
            dev.write(0, bytes(100))
    assert path.read_bytes() == bytes(4096)


def test_huge_requests_are_refused_not_allocated(tmp_path):
    path = tmp_path / "big.img"
    with open(path, "wb") as f:
        f.truncate(4 << 30)  # sparse 4 GiB
    with open_device(str(path)) as dev:
        with pytest.raises(UsageError, match="request limit") as ei:
            dev.read(0, dev.num_blocks)
        assert str(path) in str(ei.value)
        assert dev.read(dev.num_blocks - 1) == bytes(512)
