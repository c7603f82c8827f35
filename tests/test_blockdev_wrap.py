"""MemoryDevice, SubDevice and BlockSizeAdapter against a bytearray model."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsproto.errors import DeviceError, GeometryError, MediaError, OutOfRange, ReadOnlyError
from fsproto.rawdev import BlockSizeAdapter, FaultInjectingDevice, ImageFile, MemoryDevice, SubDevice


# -- MemoryDevice ------------------------------------------------------------------------------
def test_memory_device_roundtrip_snapshot_clone():
    dev = MemoryDevice(8, 512)
    assert dev.size == 4096 and dev.read(0, 8) == bytes(4096)
    dev.write(3, b"\x11" * 1024)
    copy = dev.clone()
    dev.write(3, b"\x22" * 512)
    assert copy.read(3, 2) == b"\x11" * 1024
    assert dev.snapshot()[1536:2560] == b"\x22" * 512 + b"\x11" * 512
    assert MemoryDevice.from_bytes(dev.snapshot()).snapshot() == dev.snapshot()


def test_memory_device_refuses_bad_geometry_and_closed_use():
    with pytest.raises(GeometryError):
        MemoryDevice.from_bytes(b"x" * 100)
    with pytest.raises(GeometryError):
        MemoryDevice(1 << 30, 512)  # 512 GiB: refused, not allocated
    with pytest.raises(GeometryError):
        MemoryDevice(2, 512, data=b"x" * 512)
    dev = MemoryDevice(2)
    with pytest.raises(OutOfRange) as ei:
        dev.read(1, 2)
    assert ei.value.lba == 1 and "memory" in str(ei.value)
    dev.close()
    dev.close()  # idempotent
    with pytest.raises(DeviceError, match="closed"):
        dev.read(0)


# -- SubDevice ---------------------------------------------------------------------------------
def test_subdevice_window_maps_and_bounds():
    base = MemoryDevice.from_bytes(bytes(range(256)) * 32)  # 16 blocks
    sub = SubDevice(base, 4, 6, owns_inner=False)
    assert sub.num_blocks == 6 and sub.block_size == 512
    assert sub.read(0, 6) == base.read(4, 6)
    sub.write(5, b"\xff" * 512)
    assert base.read(9) == b"\xff" * 512
    with pytest.raises(OutOfRange):
        sub.read(5, 2)  # would spill into the base's block 10
    with pytest.raises(GeometryError):
        SubDevice(base, 10, 7)
    with pytest.raises(GeometryError):
        SubDevice.from_bytes(base, 100, 512)
    assert SubDevice.from_bytes(base, 1024, 2048, owns_inner=False).read(0, 4) == base.read(2, 4)
    ro = SubDevice(base, 0, 2, read_only=True, owns_inner=False)
    with pytest.raises(ReadOnlyError):
        ro.write(0, bytes(512))


def test_wrapper_ownership_of_inner():
    base = MemoryDevice(4)
    SubDevice(base, 0, 2, owns_inner=False).close()
    assert not base.closed
    SubDevice(base, 0, 2).close()
    assert base.closed


# -- BlockSizeAdapter --------------------------------------------------------------------------
@settings(max_examples=120, deadline=None)
@given(
    inner_bs=st.sampled_from([512, 1024, 4096]),
    outer_bs=st.sampled_from([512, 1024, 2048, 4096, 8192]),
    ops=st.lists(st.tuples(st.integers(0, 63), st.integers(1, 3), st.integers(0, 255)), max_size=10),
)
def test_adapter_matches_a_flat_byte_model(inner_bs, outer_bs, ops):
    total = 64 * 1024
    model = bytearray(os.urandom(total))
    inner = MemoryDevice.from_bytes(model, inner_bs)
    dev = BlockSizeAdapter(inner, outer_bs)
    assert dev.num_blocks == total // outer_bs and dev.block_size == outer_bs
    for lba, count, byte in ops:
        lba %= dev.num_blocks
        count = min(count, dev.num_blocks - lba)
        data = bytes([byte]) * (count * outer_bs)
        dev.write(lba, data)
        model[lba * outer_bs : (lba + count) * outer_bs] = data
        assert dev.read(lba, count) == data
    assert inner.snapshot() == bytes(model)
    assert dev.read(0, dev.num_blocks) == bytes(model)


def test_adapter_4k_on_512_and_tail_rule():
    inner = MemoryDevice(17, 512)  # 8.5 KiB: not a whole number of 4 KiB blocks
    with pytest.raises(GeometryError) as ei:
        BlockSizeAdapter(inner, 4096)
    assert "memory" in str(ei.value)
    dev = BlockSizeAdapter(inner, 4096, allow_tail=True, owns_inner=False)
    assert dev.num_blocks == 2
    dev.write(1, b"\x42" * 4096)
    assert inner.read(8, 8) == b"\x42" * 4096 and inner.read(16) == bytes(512)
    with pytest.raises(OutOfRange):
        dev.read(2)


def test_adapter_small_blocks_rmw_touches_only_written_bytes():
    inner = MemoryDevice.from_bytes(b"\xaa" * 8192, 4096)
    dev = BlockSizeAdapter(inner, 512, owns_inner=False)
    assert dev.num_blocks == 16
    dev.write(3, b"\x01" * 1024)  # inside one 4 KiB sector
    dev.write(7, b"\x02" * 1024)  # straddles both sectors
    snap = inner.snapshot()
    assert snap[1536:2560] == b"\x01" * 1024
    assert snap[3584:4608] == b"\x02" * 1024
    assert snap.count(b"\xaa") == 8192 - 2048


def test_adapter_small_blocks_need_the_whole_inner_sector():
    """Documented caveat: a small write is a read-modify-write of the whole inner sector."""
    inner = MemoryDevice.from_bytes(b"\xaa" * 8192, 4096)
    faulty = FaultInjectingDevice(inner, read_errors=[0], owns_inner=False)
    dev = BlockSizeAdapter(faulty, 512, owns_inner=False)
    with pytest.raises(MediaError) as ei:
        dev.write(1, b"\x01" * 512)  # needs the old bytes of blocks 0 and 2..7
    assert ei.value.lba == 0
    dev.write(0, b"\x02" * 4096)  # a whole inner sector needs no read
    assert inner.read(0) == b"\x02" * 4096
    # A power cut during the RMW write loses the whole sector's update, never half a small block.
    faulty.arm(cut_after_writes=0)
    dev.write(9, b"\x03" * 512)
    assert inner.read(1) == b"\xaa" * 4096


def test_adapter_on_image_file(tmp_path):
    img = ImageFile.create(tmp_path / "d.img", 1 << 16)
    img.write(8, b"\x33" * 4096)
    dev = BlockSizeAdapter(img, 4096)
    assert dev.read(1) == b"\x33" * 4096 and dev.num_blocks == 16
    dev.close()
    assert img.closed


def test_adapter_refuses_sizes_that_do_not_divide():
    with pytest.raises(GeometryError):
        BlockSizeAdapter(MemoryDevice(4, 4096), 3000)
    with pytest.raises(DeviceError):
        BlockSizeAdapter(MemoryDevice(4, 1024), 1536)


@settings(max_examples=80, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 200), st.integers(1, 3), st.integers(0, 255)), max_size=12
    )
)
def test_stacked_wrappers_match_a_flat_model(tmp_path_factory, ops):
    """Overlay on an adapter on a window of a memory disk behaves like a plain byte array."""
    from fsproto.rawdev import Overlay

    disk = MemoryDevice.from_bytes(os.urandom(256 * 512))
    window = SubDevice(disk, 32, 200, owns_inner=False)  # blocks 32..231 of the disk
    dev = Overlay(BlockSizeAdapter(window, 1024), tmp_path_factory.mktemp("s") / "o.cow")
    model = bytearray(disk.read(32, 200))
    before = disk.snapshot()
    for is_write, lba, n, v in ops:
        lba %= dev.num_blocks
        n = min(n, dev.num_blocks - lba)
        if is_write:
            dev.write(lba, bytes([v]) * n * 1024)
            model[lba * 1024 : (lba + n) * 1024] = bytes([v]) * n * 1024
        else:
            assert dev.read(lba, n) == bytes(model[lba * 1024 : (lba + n) * 1024])
    assert disk.snapshot() == before  # the overlay kept every write
    dev.commit()
    assert disk.read(32, 200) == bytes(model)
    assert disk.snapshot()[: 32 * 512] == before[: 32 * 512] and disk.snapshot()[232 * 512 :] == before[232 * 512 :]
    dev.close()
