"""Container images made by qemu-img (qcow2, VMDK, VHDX, VDI, VHD) and E01 made by ewfacquire,
opened by content through qemu-nbd / libewf; QEMU's own tools (qemu-img check, convert) and
fsck.vfat / mtools judge what fsproto wrote. Every test checks that no qemu-nbd outlived it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from fsproto.blockdev.container import ContainerDevice, sniff_container
from fsproto.errors import MediaError
from fsproto.rawdev import open_device
from nbd_helpers import Served, fsproto, helpers_mentioning, wait_no_helpers

pytestmark = pytest.mark.timeout(300)

# qemu-img's format name -> what fsproto info calls it
FORMATS = {"qcow2": "qcow2", "vmdk": "VMDK", "vhdx": "VHDX", "vdi": "VDI", "vpc": "VHD"}
CHECKABLE = {"qcow2", "vmdk", "vhdx", "vdi"}  # qemu-img check does not support vpc


@pytest.fixture(autouse=True)
def no_helper_left(tmp_path: Path):
    yield
    assert wait_no_helpers(str(tmp_path)) == []


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mkfs_put_on_a_container_then_qemu_img_check_convert_and_fsck(tmp_path: Path, fmt: str) -> None:
    image = tmp_path / "disk.bin"  # no telling extension: the format is found by content
    assert qemu_img("create", "-q", "-f", fmt, str(image), "32M").returncode == 0
    fsproto("mkfs", "--format", "fat", "--fat", "16", str(image), check=True)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    fsproto("put", str(image), str(payload), check=True)
    fsproto("get", "-o", str(tmp_path / "back"), str(image), "payload.bin", check=True)
    assert (tmp_path / "back" / "payload.bin").read_bytes() == payload.read_bytes()
    info = fsproto("info", str(image), check=True).stdout
    assert f"container:   {FORMATS[fmt]}, virtual size " in info
    if fmt in CHECKABLE:
        check = qemu_img("check", "-f", fmt, str(image))
        assert check.returncode == 0, check.stdout + check.stderr
    raw = tmp_path / "converted.raw"
    assert qemu_img("convert", "-f", fmt, "-O", "raw", str(image), str(raw)).returncode == 0
    fsck = subprocess.run(["fsck.vfat", "-n", str(raw)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    got = subprocess.run(["mtype", "-i", str(raw), "::PAYLOAD.BIN"], capture_output=True, check=True).stdout
    assert got == payload.read_bytes()


def test_qcow2_with_a_backing_file_reads_the_backing_data_and_writes_only_the_top(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", str(base), "16M").returncode == 0
    fsproto("mkfs", "--format", "fat", str(base), check=True)
    old = tmp_path / "old.txt"
    old.write_text("from the backing file\n")
    fsproto("put", str(base), str(old), check=True)
    top = tmp_path / "top.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(top)).returncode == 0
    assert fsproto("cat", str(top), "old.txt", check=True).stdout == old.read_text()
    info = fsproto("info", str(top), check=True).stdout
    assert "backing:     " in info and "base.qcow2 (qcow2)" in info
    base_before = base.read_bytes()
    new = tmp_path / "new.txt"
    new.write_text("only in the top layer\n")
    fsproto("put", str(top), str(new), check=True)
    assert base.read_bytes() == base_before
    assert sorted(fsproto("ls", str(top), check=True).stdout.split()) == ["new.txt", "old.txt"]
    assert qemu_img("check", str(top)).returncode == 0


def test_content_not_name_decides(tmp_path: Path) -> None:
    looks_qcow2 = tmp_path / "really-raw.qcow2"
    looks_qcow2.write_bytes(bytes(1 << 20))
    assert sniff_container(str(looks_qcow2)) is None
    with open_device(str(looks_qcow2)) as dev:
        assert type(dev).__name__ == "ImageFile"
    named_img = tmp_path / "disk.img"
    assert qemu_img("create", "-q", "-f", "qcow2", str(named_img), "8M").returncode == 0
    with open_device(str(named_img)) as dev:
        assert isinstance(dev, ContainerDevice) and dev.container == "qcow2" and dev.size == 8 << 20


@pytest.mark.parametrize("cut", [50, 1000, 300_000])
def test_truncated_qcow2_is_one_line_and_no_qemu_nbd_left(tmp_path: Path, cut: int) -> None:
    whole = tmp_path / "whole.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", str(whole), "32M").returncode == 0
    fsproto("mkfs", "--format", "fat", str(whole), check=True)
    payload = tmp_path / "p.bin"
    payload.write_bytes(os.urandom(200_000))
    fsproto("put", str(whole), str(payload), check=True)
    truncated = tmp_path / "truncated.qcow2"
    truncated.write_bytes(whole.read_bytes()[:cut])
    done = fsproto("ls", str(truncated))
    assert done.returncode == 8
    assert done.stderr.startswith(f"fsproto: error: {truncated}: ") and done.stderr.count("\n") == 1
    assert ("truncated" in done.stderr) or ("header too short" in done.stderr)


def test_a_dying_qemu_nbd_is_one_error_and_is_reaped(tmp_path: Path) -> None:
    image = tmp_path / "d.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", str(image), "8M").returncode == 0
    dev = open_device(str(image), writable=True)
    disk = dev if isinstance(dev, ContainerDevice) else dev.inner  # type: ignore[attr-defined]
    assert isinstance(disk, ContainerDevice)
    try:
        (running,) = helpers_mentioning(str(image))
        os.kill(int(running.split()[0]), signal.SIGKILL)
        with pytest.raises(MediaError, match=r"qemu-nbd exited \(signal SIGKILL\)"):
            dev.read(0, 1)
    finally:
        with pytest.raises(MediaError):
            dev.close()  # the flush at close fails the same way; the helper is still reaped
    assert helpers_mentioning(str(image)) == []


def test_serving_a_qcow2_gives_its_virtual_disk(tmp_path: Path) -> None:
    image = tmp_path / "vm.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", str(image), "16M").returncode == 0
    fsproto("mkfs", "--format", "fat", str(image), check=True)
    direct = tmp_path / "direct.raw"
    assert qemu_img("convert", "-O", "raw", str(image), str(direct)).returncode == 0
    served = tmp_path / "served.raw"
    with Served("--read-only", str(image)) as srv:
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, str(served)], check=True, timeout=60)
        assert srv.stop() == 0
    assert served.read_bytes() == direct.read_bytes()


@pytest.mark.skipif(shutil.which("ewfacquire") is None, reason="ewfacquire (Debian ewf-tools, tools/setup.sh) missing")
@pytest.mark.parametrize("ewf_format", ["encase6", "encase7-v2"])
def test_e01_and_ex01_made_by_ewfacquire_open_read_only(tmp_path: Path, ewf_format: str) -> None:
    raw = tmp_path / "evidence.raw"
    fsproto("mkfs", "--format", "fat", "--size", "8M", str(raw), check=True)
    note = tmp_path / "note.txt"
    note.write_text("acquired\n" * 100)
    fsproto("put", str(raw), str(note), check=True)
    target = tmp_path / "evidence"
    subprocess.run(["ewfacquire", "-u", "-q", "-t", str(target), "-f", ewf_format, "-c", "deflate:fast", str(raw)],
                   check=True, capture_output=True, timeout=120)
    (segment,) = sorted(tmp_path.glob("evidence.?01"))
    assert fsproto("cat", str(segment), "note.txt", check=True).stdout == note.read_text()
    info = fsproto("info", str(segment), check=True).stdout
    assert "container:   EWF" in info and f"virtual size {8 << 20} bytes" in info
    with open_device(str(segment)) as dev:
        assert dev.read(0, dev.num_blocks) == raw.read_bytes()
    refused = fsproto("put", str(segment), str(note))
    assert refused.returncode == 8 and "read-only" in refused.stderr and refused.stderr.count("\n") == 1
