"""``fsproto mount`` / ``fsproto umount`` end to end, with the test-only memimg format.

The CLI runs in a child process (it forks a daemon); the image is checked offline afterwards.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuse_helpers import HERE, PROJECT_ROOT, MountedFs, bad_log_lines, force_unmount, fsproto_cli, is_mounted, process_alive, wait_for_mount
from memfs import MEMIMG

from fsproto.cli import cli
from fsproto.rawdev import ImageFile

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120)]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    with ImageFile.create(path, 4 << 20) as dev:
        MEMIMG.mkfs(dev)
    return path


@pytest.fixture
def mnt(tmp_path: Path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    yield mp
    force_unmount(mp)
    time.sleep(0.05)
    assert not is_mounted(mp)


def offline(image: Path) -> dict[str, bytes]:
    with ImageFile(image) as dev:
        fs = MEMIMG.open(dev)
        return {st.name: fs.read("/" + st.name, 0, st.size) for st in fs.listdir("/")}


def daemon_pid(mp: Path) -> int:
    from fsproto.mount.daemon import lock_path

    return int(Path(lock_path(str(mp))).read_text())


def test_background_mount_write_umount_remount(image: Path, mnt: Path, tmp_path: Path):
    log = tmp_path / "mount.log"
    r = fsproto_cli("mount", str(image), str(mnt), "--log", str(log))
    assert r.returncode == 0, r.stderr
    assert os.path.ismount(mnt)  # the parent returned only once the daemon runs
    pid = daemon_pid(mnt)
    assert process_alive(pid)
    (mnt / "A.TXT").write_bytes(b"first")
    with open(mnt / "A.TXT", "ab") as f:
        f.write(b" second")
    line = next(l for l in Path("/proc/self/mountinfo").read_text().splitlines() if l.split()[4] == str(mnt))
    assert f"fuse.memimg {image}" in line  # type and source as `mount` and `df` show them
    r = fsproto_cli("umount", str(mnt))
    assert r.returncode == 0, r.stderr
    assert not is_mounted(mnt)
    assert not process_alive(pid)  # umount returned only after the daemon flushed and exited
    assert offline(image) == {"A.TXT": b"first second"}
    assert fsproto_cli("mount", str(image), str(mnt), "--log", str(log)).returncode == 0
    assert (mnt / "A.TXT").read_bytes() == b"first second"
    assert fsproto_cli("umount", str(mnt)).returncode == 0
    assert not bad_log_lines(log)


@pytest.mark.parametrize(
    "sig, opts",
    [(signal.SIGTERM, []), (signal.SIGINT, []), (signal.SIGTERM, ["-o", "writeback_cache"])],
    ids=["SIGTERM", "SIGINT", "SIGTERM-writeback"],
)
def test_signal_unmounts_cleanly_with_data_flushed(image: Path, mnt: Path, tmp_path: Path, sig: int, opts: list[str]):
    """With writeback_cache the data may still be dirty pages in the kernel at the signal."""
    log = tmp_path / "mount.log"
    cmd = [sys.executable, str(HERE / "fuse_helpers.py"), "cli", "mount", "--foreground", "--log", str(log), *opts, str(image), str(mnt)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=PROJECT_ROOT)
    m = MountedFs(mnt, log, proc)
    try:
        wait_for_mount(mnt, proc)
        # Still open at the signal: with writeback_cache the bytes are dirty kernel pages
        # that only the daemon's syncfs-before-terminate brings to the device.
        fd = os.open(mnt / "B.DAT", os.O_CREAT | os.O_WRONLY)
        try:
            assert os.write(fd, b"x" * 100_000) == 100_000
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 0, m.log_text()
            assert not is_mounted(mnt)
        finally:
            try:
                os.close(fd)
            except OSError:  # the connection is gone; the data must already be on the device
                pass
    finally:
        m.cleanup()
    assert offline(image) == {"B.DAT": b"x" * 100_000}
    assert not bad_log_lines(log)


def test_corrupt_image_is_one_line_and_nonzero(image: Path, mnt: Path):
    data = bytearray(image.read_bytes())
    data[30] ^= 0xFF  # inside the JSON payload: the checksum no longer matches
    image.write_bytes(bytes(data))
    r = fsproto_cli("mount", str(image), str(mnt))
    assert r.returncode == 4  # FormatError: e2fsck's "left uncorrected"
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("fsproto: error: ") and "block 0" in r.stderr and "checksum" in r.stderr
    assert not is_mounted(mnt)


def test_unknown_format_and_bad_mountpoint_fail_in_process(tmp_path: Path, mnt: Path, capsys):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    handlers = list(logging.getLogger("fsproto").handlers)
    assert cli(["mount", str(blank), str(mnt)]) == 4
    assert logging.getLogger("fsproto").handlers == handlers  # the caller's logging is left alone
    err = capsys.readouterr().err
    assert "no known format recognises" in err and err.count("\n") == 1
    assert cli(["mount", str(blank), str(tmp_path / "nowhere")]) == 16
    assert cli(["mount", str(tmp_path / "missing.img"), str(mnt)]) == 8
    assert cli(["mount", str(blank), str(mnt), "-o", "bogus"]) == 16
    assert cli(["mount", str(blank), str(mnt), "--log", str(tmp_path / "no" / "dir.log")]) == 16
    assert cli(["umount", str(mnt)]) == 16
    assert "not mounted" in capsys.readouterr().err
    assert not is_mounted(mnt)


def test_ro_gives_erofs_and_leaves_image_untouched(image: Path, mnt: Path, tmp_path: Path):
    before = image.read_bytes()
    r = fsproto_cli("mount", "--ro", "-o", "fsname=mydisk,subtype=test", str(image), str(mnt), "--log", str(tmp_path / "l"))
    assert r.returncode == 0, r.stderr
    try:
        for call in (
            lambda: os.open(mnt / "NEW.FILE", os.O_CREAT | os.O_WRONLY),
            lambda: os.mkdir(mnt / "D"),
        ):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EROFS
        line = next(l for l in Path("/proc/self/mountinfo").read_text().splitlines() if l.split()[4] == str(mnt))
        assert " ro," in line and "fuse.test mydisk" in line
    finally:
        assert fsproto_cli("umount", str(mnt)).returncode == 0
    assert image.read_bytes() == before


def test_umount_refuses_busy_mount_unless_lazy(image: Path, mnt: Path, tmp_path: Path):
    assert fsproto_cli("mount", str(image), str(mnt), "--log", str(tmp_path / "l")).returncode == 0
    fd = os.open(mnt / "BUSY.FILE", os.O_CREAT | os.O_RDWR)
    try:
        os.write(fd, b"held open")
        r = fsproto_cli("umount", str(mnt))
        assert r.returncode == 8 and "in use" in r.stderr
        assert is_mounted(mnt)
        r = fsproto_cli("umount", "--lazy", str(mnt))
        assert r.returncode == 0, r.stderr
    finally:
        os.close(fd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and offline(image) != {"BUSY.FILE": b"held open"}:
        time.sleep(0.1)
    assert offline(image) == {"BUSY.FILE": b"held open"}


def test_second_mount_of_the_same_image_is_refused(image: Path, mnt: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    assert fsproto_cli("mount", str(image), str(mnt), "--log", str(tmp_path / "l")).returncode == 0
    try:
        for extra in ([], ["--ro"]):
            r = fsproto_cli("mount", *extra, str(image), str(other))
            assert r.returncode == 8 and "in use by pid " in r.stderr, r.stderr
            assert not is_mounted(other)
    finally:
        assert fsproto_cli("umount", str(mnt)).returncode == 0
    # Read-only mounts share the image.
    assert fsproto_cli("mount", "--ro", str(image), str(mnt), "--log", str(tmp_path / "l")).returncode == 0
    assert fsproto_cli("mount", "--ro", str(image), str(other), "--log", str(tmp_path / "l")).returncode == 0
    assert fsproto_cli("umount", str(mnt)).returncode == 0
    assert fsproto_cli("umount", str(other)).returncode == 0
