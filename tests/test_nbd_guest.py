"""A real kernel on a disk fsproto serves: a QEMU guest attaches ``fsproto serve``'s export through
QEMU's own NBD client, its vfat driver mounts it read-write, writes a file and unmounts; back on
the host, fsproto, mtools and ``fsck.vfat -n`` see the file. One guest boot (TCG, ~10 s)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import fat_vm
from nbd_helpers import Served, fsproto, wait_no_helpers

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(fat_vm.kernel() is None, reason="no guest kernel: run tools/setup.sh")]


def test_guest_kernel_writes_vfat_over_nbd_and_the_host_sees_it(tmp_path: Path) -> None:
    img = tmp_path / "fat.img"
    fsproto("mkfs", "--format", "fat", "--fat", "16", "--size", "24M", str(img), check=True)
    before = tmp_path / "host.txt"
    before.write_text("put by the host before the guest\n")
    fsproto("put", str(img), str(before), check=True)
    data = b"written by the guest kernel over NBD\n" * 100
    with Served(str(img)) as srv:
        listed = fat_vm.kernel_write_over_nbd(srv.uri, "guest.txt", data)
        assert srv.stop() == 0
    assert "flushed and closed" in srv.stdout
    assert sorted(listed) == ["guest.txt", "host.txt"]
    fsck = subprocess.run(["fsck.vfat", "-n", str(img)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    assert sorted(fsproto("ls", str(img), check=True).stdout.split()) == ["guest.txt", "host.txt"]
    assert subprocess.run(["mtype", "-i", str(img), "::GUEST.TXT"], capture_output=True, check=True).stdout == data
    assert fsproto("fsck", str(img)).returncode == 0
    assert wait_no_helpers(str(tmp_path)) == []
