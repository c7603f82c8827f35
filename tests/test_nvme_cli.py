"""The CLI on a namespace behind fsproto's NVMe driver (``nvme:qtest:IMAGE``): mkfs, put, ls and
fsck work unchanged, and the offline tools read the same image afterwards."""

from __future__ import annotations

import shutil

import pytest

from fsproto.cli import cli

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (tools/setup.sh)"),
    pytest.mark.timeout(120),
]


def test_mkfs_put_ls_on_an_nvme_namespace(tmp_path, capsys):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (4 << 20))
    spec = f"nvme:qtest:{img}"
    assert cli(["mkfs", "--format", "cms", "--label", "NVME01", spec]) == 0
    names = []
    for i in range(3):
        src = tmp_path / f"FILE{i}.DATA"
        src.write_bytes(f"record {i}\n".encode() * (i * 300 + 1))
        names.append(src.name)
        assert cli(["put", spec, str(src)]) == 0
    capsys.readouterr()
    before = img.read_bytes()
    assert cli(["ls", spec]) == 0
    over_nvme = capsys.readouterr().out.split()
    assert cli(["ls", str(img)]) == 0  # the same image, read offline by the file backend
    offline = capsys.readouterr().out.split()
    assert sorted(over_nvme) == sorted(offline) == sorted(names)
    assert cli(["cat", str(img), "FILE2.DATA"]) == 0
    assert capsys.readouterr().out == "record 2\n" * 601
    assert cli(["fsck", spec]) == 0
    assert img.read_bytes() == before  # ls, cat and fsck opened the namespace read-only: nothing written


def test_bad_controller_specs_print_one_line(tmp_path, capsys):
    assert cli(["ls", f"nvme:qtest:{tmp_path}/missing.img"]) == 8
    assert cli(["ls", "nvme:not-a-bdf"]) == 16
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("fsproto: error: ") for line in err)


def test_writers_respect_the_image_lock_of_a_qtest_controller(tmp_path, capsys):
    import fcntl

    img = tmp_path / "locked.img"
    img.write_bytes(b"\0" * (2 << 20))
    spec = f"nvme:qtest:{img}"
    assert cli(["mkfs", "--format", "cms", spec]) == 0
    src = tmp_path / "A.FILE"
    src.write_bytes(b"a\n")
    with open(img, "rb") as holder:  # what a read-write fsproto mount of the image holds
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        capsys.readouterr()
        assert cli(["put", spec, str(src)]) == 8
        assert "in use" in capsys.readouterr().err
    assert cli(["put", spec, str(src)]) == 0


def test_background_mount_of_a_driver_device_is_refused(tmp_path, capsys):
    """The daemon forks; a user-space driver's DMA memory and controller session do not follow."""
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (2 << 20))
    spec = f"nvme:qtest:{img}"
    assert cli(["mkfs", "--format", "cms", spec]) == 0
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    capsys.readouterr()
    assert cli(["mount", spec, str(mnt)]) == 16
    err = capsys.readouterr().err
    assert "--foreground" in err and err.count("\n") == 1
    import os

    assert not os.path.ismount(mnt)
