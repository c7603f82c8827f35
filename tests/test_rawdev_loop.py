"""RawDevice on real loop devices: geometry ioctls, O_EXCL, refusal of mounted devices."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from fsproto.blockdev import raw
from fsproto.errors import DeviceBusy, NotADevice, ReadOnlyError
from fsproto.rawdev import BlockSizeAdapter, RawDevice, open_device

pytestmark = pytest.mark.loop

if os.geteuid() != 0:  # pragma: no cover - CI runs as root
    pytest.skip("loop devices need root", allow_module_level=True)


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def loop_device(image: Path, *args: str) -> Iterator[str]:
    """Attach *image* to a free loop device; always detached, even when the test fails."""
    dev = run("losetup", "-f", "--show", *args, str(image))
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def mounted(dev: str, where: Path) -> Iterator[None]:
    where.mkdir(exist_ok=True)
    run("mount", dev, str(where))
    try:
        yield
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(range(256)) * (8 * 1024 * 1024 // 256))  # 8 MiB, known contents
    return path


def test_geometry_and_reads_match_the_file(image):
    with loop_device(image) as node, RawDevice(node) as dev:
        sysname = os.path.basename(node)
        sectors = int(Path(f"/sys/class/block/{sysname}/size").read_text())  # always 512-byte units
        assert dev.size == sectors * 512 == image.stat().st_size
        assert dev.block_size == int(Path(f"/sys/class/block/{sysname}/queue/logical_block_size").read_text())
        assert dev.read_only and dev.exclusive
        assert dev.read(100, 3) == image.read_bytes()[100 * 512 : 103 * 512]
        with pytest.raises(ReadOnlyError) as ei:
            dev.write(0, bytes(512))
        assert node in str(ei.value)


def test_write_when_asked_lands_in_the_backing_file(image):
    with loop_device(image) as node:
        with RawDevice(node, writable=True) as dev:
            dev.write(7, b"\x5a" * 1024)
            dev.flush()
        assert image.read_bytes()[7 * 512 : 9 * 512] == b"\x5a" * 1024


def test_o_excl_refuses_a_second_opener(image):
    with loop_device(image) as node:
        with RawDevice(node):
            with pytest.raises(DeviceBusy, match="exclusively") as ei:
                RawDevice(node)
            assert node in str(ei.value)
        # Also against a foreign O_EXCL holder, and force opens anyway (not exclusively).
        fd = os.open(node, os.O_RDONLY | os.O_EXCL)
        try:
            with pytest.raises(DeviceBusy):
                open_device(node)
            with open_device(node, force=True) as dev:
                assert not dev.exclusive
        finally:
            os.close(fd)


def test_mounted_ext2_is_refused_unless_forced(tmp_path):
    img = tmp_path / "ext2.img"
    img.write_bytes(bytes(4 * 1024 * 1024))
    run("mkfs.ext2", "-q", "-F", str(img))
    with loop_device(img) as node, mounted(node, tmp_path / "mnt"):
        with pytest.raises(DeviceBusy) as ei:
            RawDevice(node)
        msg = str(ei.value)
        assert node in msg and "mounted on" in msg and str(tmp_path / "mnt") in msg
        with RawDevice(node, force=True) as dev:
            assert dev.read(2, 2)[56:58] == b"\x53\xef"  # ext2 superblock magic at 1024 + 56


def test_mounted_partition_makes_the_whole_disk_busy(tmp_path):
    img = tmp_path / "parted.img"
    img.write_bytes(bytes(16 * 1024 * 1024))
    subprocess.run(["sfdisk", "-q", str(img)], input="label: dos\n,8M,83\n", text=True, check=True)
    with loop_device(img, "-P") as node:
        part = node + "p1"
        if not Path(part).exists():
            # The kernel's scan at attach time can race; partx asks it to add them explicitly.
            subprocess.run(["partx", "-a", node], check=False, capture_output=True)
        if not Path(part).exists():
            pytest.skip(f"{part} did not appear (no partition scanning on this kernel)")
        run("mkfs.ext2", "-q", "-F", part)
        with mounted(part, tmp_path / "mnt"):
            with pytest.raises(DeviceBusy, match="mounted on"):
                RawDevice(node)


def test_4k_sector_loop_device_and_adapter(image):
    with loop_device(image, "--sector-size", "4096") as node:
        with RawDevice(node) as dev:
            assert dev.block_size == 4096
            assert dev.num_blocks == image.stat().st_size // 4096
        with open_device(node, writable=True, block_size=512) as dev:
            assert isinstance(dev, BlockSizeAdapter) and dev.block_size == 512
            dev.write(9, b"\x77" * 512)  # read-modify-write of the 4 KiB sector 1
            dev.flush()
        data = image.read_bytes()
        assert data[9 * 512 : 10 * 512] == b"\x77" * 512
        assert data[8 * 512 : 9 * 512] == (bytes(range(256)) * 2)


def test_regular_file_is_not_a_raw_device(image):
    with pytest.raises(NotADevice):
        RawDevice(image)


def test_holders_are_detected(tmp_path, image):
    """A device-mapper target on the loop device makes it busy (needs dm in the kernel)."""
    with loop_device(image) as node:
        name = f"fsproto-test-{os.getpid()}"
        size = image.stat().st_size // 512
        made = subprocess.run(["dmsetup", "create", name, "--table", f"0 {size} linear {node} 0"], capture_output=True)
        if made.returncode != 0:
            pytest.skip("device-mapper is not available in this kernel")
        try:
            with pytest.raises(DeviceBusy, match="held by dm-"):
                RawDevice(node)
        finally:
            subprocess.run(["dmsetup", "remove", name], check=False)


def test_busy_reasons_reads_holders_and_partitions_from_sysfs(tmp_path, monkeypatch, image):
    """The sysfs walk itself, on a copy of a real device's sysfs shape (dm is missing here)."""
    with loop_device(image) as node:
        rdev = os.stat(node).st_rdev
        dev_id = f"{os.major(rdev)}:{os.minor(rdev)}"
        root = tmp_path / "sys"
        (root / dev_id / "holders" / "dm-3").mkdir(parents=True)
        (root / dev_id / "p1").mkdir()
        (root / dev_id / "p1" / "partition").write_text("1\n")
        (root / dev_id / "p1" / "dev").write_text("259:99\n")
        (root / "259:99" / "holders" / "md0").mkdir(parents=True)
        monkeypatch.setattr(raw, "SYSFS_DEV_BLOCK", str(root))
        reasons = raw.busy_reasons(rdev)
        assert f"{dev_id} is held by dm-3" in reasons and "259:99 is held by md0" in reasons


def test_image_backing_a_mounted_loop_device_is_not_written(tmp_path):
    img = tmp_path / "ext2.img"
    img.write_bytes(bytes(4 * 1024 * 1024))
    run("mkfs.ext2", "-q", "-F", str(img))
    with loop_device(img) as node, mounted(node, tmp_path / "mnt"):
        with pytest.raises(DeviceBusy) as ei:
            open_device(str(img), writable=True)
        assert str(img) in str(ei.value) and os.path.basename(node) in str(ei.value)
        with open_device(str(img)) as dev:  # reading is harmless
            assert dev.read(2)[56:58] == b"\x53\xef"
        with open_device(str(img), writable=True, force=True) as dev:
            assert not dev.read_only
    with open_device(str(img), writable=True) as dev:  # once unmounted and detached: fine
        assert not dev.read_only


def test_partition_of_a_loop_device(tmp_path):
    img = tmp_path / "p.img"
    img.write_bytes(os.urandom(8 * 1024 * 1024))
    subprocess.run(["sfdisk", "-q", "--wipe", "never", str(img)], input="label: dos\n,2M,83\n,,83\n", text=True,
                   check=True, capture_output=True)
    with loop_device(img) as node:
        start = 2048 + 4096  # sfdisk: 1 MiB alignment, partition 1 is 2 MiB
        expected = img.read_bytes()[start * 512 : (start + 8) * 512]
        with open_device(f"{node}@2") as part:
            assert part.name == f"{node}@2"
            assert part.read(0, 8) == expected
            assert isinstance(part.inner, RawDevice) and part.inner.exclusive
            with pytest.raises(DeviceBusy):  # the whole disk is held O_EXCL through the partition
                open_device(node, partition=1)
        with open_device(node, partition=2, block_size=4096) as wide:
            assert wide.read(0) == expected


def test_a_block_device_an_fsproto_process_holds_is_refused_naming_it(tmp_path):
    """The O_EXCL refusal of a node names the fsproto process that holds its lock."""
    img = tmp_path / "disk.cms"
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    with loop_device(img) as node:
        with open_device(node, writable=True):
            with pytest.raises(DeviceBusy, match=f"held exclusively by pid {os.getpid()} \\("):
                open_device(node, writable=True)
