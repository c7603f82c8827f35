"""``fsproto mount`` (the forking daemon) on an ``nbd+unix://`` export and on a qcow2 image: the
forked daemon keeps the NBD connection (and, for the qcow2, the qemu-nbd behind it); writes through
the kernel's FUSE mount land where fsck.vfat, mtools and qemu-img check see them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fuse_helpers import force_unmount, is_mounted
from nbd_helpers import Served, fsproto, wait_no_helpers

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse")]


def _write_through_mount(device: str, mp: Path, log: Path, data: bytes) -> None:
    mp.mkdir(exist_ok=True)
    try:
        fsproto("mount", "--log", str(log), device, str(mp), check=True)
        (mp / "viafuse.txt").write_bytes(data)
        assert (mp / "viafuse.txt").read_bytes() == data
        fsproto("umount", str(mp), check=True)
        assert not is_mounted(mp)
    finally:
        force_unmount(mp)


def test_daemon_mount_of_a_served_export(tmp_path: Path) -> None:
    img = tmp_path / "fat.img"
    fsproto("mkfs", "--format", "fat", "--size", "16M", str(img), check=True)
    data = b"through FUSE, NBD and nbdkit\n" * 50
    with Served(str(img)) as srv:
        _write_through_mount(srv.uri, tmp_path / "mnt", tmp_path / "mount.log", data)
        assert srv.stop() == 0
    assert subprocess.run(["fsck.vfat", "-n", str(img)], capture_output=True).returncode == 0
    assert subprocess.run(["mtype", "-i", str(img), "::VIAFUSE.TXT"], capture_output=True, check=True).stdout == data
    assert wait_no_helpers(str(tmp_path)) == []


def test_daemon_mount_of_a_qcow2(tmp_path: Path) -> None:
    img = tmp_path / "vm.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "16M"], check=True)
    fsproto("mkfs", "--format", "fat", str(img), check=True)
    data = b"through FUSE into a qcow2\n" * 50
    _write_through_mount(str(img), tmp_path / "mnt", tmp_path / "mount.log", data)
    assert wait_no_helpers(str(tmp_path)) == []
    assert subprocess.run(["qemu-img", "check", str(img)], capture_output=True).returncode == 0
    raw = tmp_path / "vm.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(img), str(raw)], check=True)
    assert subprocess.run(["fsck.vfat", "-n", str(raw)], capture_output=True).returncode == 0
    assert subprocess.run(["mtype", "-i", str(raw), "::VIAFUSE.TXT"], capture_output=True, check=True).stdout == data
