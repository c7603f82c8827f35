"""One lock discipline: every command that opens a device goes through open_device, which locks it.

Against a live ``fsproto mount -o allow_other`` of the same image (the real CLI in a child
process), every writing command -- put, rm, mv, fsck --repair, write-blocks, overlay commit,
mkfs, a second mount -- is refused with one line naming the mount's pid, and the image's bytes
stay the same; readers (ls, cat, get, dump, hexdump, info) are refused beside a read-write mount
(they could see half-written metadata) and allowed beside a read-only one. With ``--force``
each command goes through.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fuse_helpers import start_cli_mount

from fsproto.blockdev.lock import lock_holders
from fsproto.cli import cli
from fsproto.errors import DeviceBusy
from fsproto.rawdev import open_device

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300)]

SIZE = 8 << 20


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["cms", "fat"])
def image(request, tmp_path: Path) -> Path:
    img = tmp_path / f"disk.{request.param}"
    assert cli(["mkfs", "--format", request.param, "--size", str(SIZE), str(img)]) == 0
    src = tmp_path / "KEEP.FILE"
    src.write_bytes(b"kept\n")
    assert cli(["put", str(img), str(src)]) == 0
    return img


def _writers(img: Path, tmp: Path) -> dict[str, list[str]]:
    """Every command that writes the device, as argv (each changes the image when it runs)."""
    fmt = img.suffix[1:]
    new = tmp / "NEW.FILE"
    new.write_bytes(b"new\n")
    block = tmp / "block.bin"
    block.write_bytes(b"\xa5" * 512)
    last = SIZE // 512 - 1  # the last sector: neither format keeps anything there
    return {  # the overlay first: it is refused once the base it was made over changed
        "overlay commit": ["overlay", "commit", str(img), str(tmp / "side.ovl")],
        "put": ["put", str(img), str(new)],
        "mv": ["mv", str(img), "KEEP.FILE", "MOVED.FILE"],
        "rm": ["rm", str(img), "MOVED.FILE"],
        "fsck --repair": ["fsck", "--repair", str(img)],
        "write-blocks": ["write-blocks", "--writable", "--lba", str(last), "--input", str(block), str(img)],
        "mkfs": ["mkfs", "--format", fmt, str(img)],
    }


_READERS = {
    "ls": lambda img: ["ls", str(img)],
    "cat": lambda img: ["cat", str(img), "KEEP.FILE"],
    "dump": lambda img: ["dump", str(img)],
    "hexdump": lambda img: ["hexdump", "--lba", "0", str(img)],
    "info": lambda img: ["info", str(img)],
}


def _make_sidecar(img: Path, tmp: Path) -> None:
    """An overlay holding one changed block, made before the mount (it reads the device)."""
    src = tmp / "ovl.bin"
    src.write_bytes(b"\x5a" * 512)
    assert cli(["write-blocks", "--writable", "--overlay", str(tmp / "side.ovl"), "--lba",
                str(SIZE // 512 - 2), "--input", str(src), str(img)]) == 0


def _refused(argv: list[str], capsys, pid: int) -> None:
    capsys.readouterr()
    status = cli(argv)
    err = capsys.readouterr().err
    assert status == 8, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fsproto: error: "), err
    assert f"in use by pid {pid} (" in err and "--force" in err, err  # names who holds it


def test_writers_and_readers_beside_a_read_write_mount_are_refused_unless_forced(image: Path, tmp_path: Path,
                                                                                capsys) -> None:
    _make_sidecar(image, tmp_path)
    writers = _writers(image, tmp_path)
    m = start_cli_mount(image, tmp_path / "mnt", tmp_path / "mount.log", "-o", "allow_other")
    try:
        assert (m.path("KEEP.FILE")).read_bytes() == b"kept\n"
        pid = m.proc.pid
        before = _sha(image)
        for name, argv in writers.items():
            _refused(argv, capsys, pid)
            assert _sha(image) == before, f"{name} changed the image under a mount"
        for name, argv in _READERS.items():
            _refused(argv(image), capsys, pid)
        other = tmp_path / "other"
        other.mkdir()
        for extra in ([], ["--ro"]):
            _refused(["mount", *extra, str(image), str(other)], capsys, pid)
        assert _sha(image) == before
        for name, argv in _READERS.items():
            assert cli([*argv(image), "--force"]) == 0, name
        for name, argv in writers.items():  # in this order each one has something to change
            previous = _sha(image)
            status = cli([argv[0], *(argv[1:2] if name == "overlay commit" else []), "--force",
                          *argv[(2 if name == "overlay commit" else 1):]])
            assert status == 0, (name, capsys.readouterr().err)
            if name != "fsck --repair":  # a clean image has nothing to repair
                assert _sha(image) != previous, f"{name} --force did not write"
        capsys.readouterr()
        m.unmount()
    finally:
        m.cleanup()


def test_a_read_only_mount_shares_with_readers_and_refuses_writers(image: Path, tmp_path: Path, capsys) -> None:
    _make_sidecar(image, tmp_path)
    m = start_cli_mount(image, tmp_path / "mnt", tmp_path / "mount.log", "--ro", "-o", "allow_other")
    try:
        before = _sha(image)
        for name, argv in _writers(image, tmp_path).items():
            _refused(argv, capsys, m.proc.pid)
        assert _sha(image) == before
        for name, argv in _READERS.items():
            capsys.readouterr()
            assert cli(argv(image)) == 0, (name, capsys.readouterr().err)
        m.unmount()
    finally:
        m.cleanup()


def test_the_lock_is_taken_in_open_device_for_any_caller(tmp_path: Path) -> None:
    """A new command (a server, a script) gets the lock by opening through open_device."""
    img = tmp_path / "plain.img"
    img.write_bytes(bytes(1 << 20))
    with open_device(str(img), writable=True):
        with open(img, "rb") as probe:
            assert lock_holders(probe.fileno()) == [f"pid {os.getpid()} ({_cmdline()})"]
        with pytest.raises(DeviceBusy, match=f"in use by pid {os.getpid()} "):
            open_device(str(img))
        with pytest.raises(DeviceBusy):
            open_device(str(img), writable=True)
        with open_device(str(img), writable=True, force=True) as forced:  # goes on without the lock
            assert not forced.read_only
    with open_device(str(img)), open_device(str(img)):  # readers share
        with pytest.raises(DeviceBusy, match="to write anyway"):
            open_device(str(img), writable=True)
    with open_device(str(img), writable=True, overlay=str(tmp_path / "o.ovl")):  # the disk is only read
        with open_device(str(img)):
            pass
        with pytest.raises(DeviceBusy):
            open_device(str(img), writable=True)


def _cmdline() -> str:
    text = " ".join(Path("/proc/self/cmdline").read_bytes().decode().split("\0")).strip()
    return text if len(text) <= 120 else text[:117] + "..."


def test_an_overlay_sidecar_has_one_opener(tmp_path: Path) -> None:
    """Two processes appending to one sidecar would interleave records: the second is refused."""
    img = tmp_path / "base.img"
    img.write_bytes(bytes(1 << 20))
    side = str(tmp_path / "x.ovl")
    with open_device(str(img), writable=True, overlay=side) as dev:
        dev.write(0, b"\1" * 512)
        with pytest.raises(DeviceBusy, match=f"x.ovl: in use by pid {os.getpid()} "):
            open_device(str(img), writable=True, overlay=side)
        with pytest.raises(DeviceBusy):
            open_device(str(img), overlay=side)  # reopening may cut a torn record: a writer too
    with open_device(str(img), overlay=side) as dev:  # closed: free again
        assert dev.read(0, 1) == b"\1" * 512


def test_a_daemon_mount_is_named_by_the_pid_that_serves_it(tmp_path: Path, capsys) -> None:
    """The background daemon inherits the lock from the process that took it and then exited;
    the refusal names the daemon, the process that really holds the device."""
    from fuse_helpers import fsproto_cli

    img = tmp_path / "d.cms"
    assert cli(["mkfs", "--format", "cms", "--size", "4M", str(img)]) == 0
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = fsproto_cli("mount", "--log", str(tmp_path / "log"), str(img), str(mnt), memimg=False)
    assert r.returncode == 0, r.stderr
    try:
        from fsproto.mount.daemon import lock_path

        daemon = int(Path(lock_path(str(mnt))).read_text())
        capsys.readouterr()
        assert cli(["rm", str(img), "X.Y"]) == 8
        err = capsys.readouterr().err
        assert f"in use by pid {daemon} (" in err and " mount " in err, err
    finally:
        assert fsproto_cli("umount", str(mnt), memimg=False).returncode == 0
