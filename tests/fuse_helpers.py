"""Helpers and fixtures for tests that mount (following pyfuse3's ``test/util.py``).

The filesystem always runs in a child process; the test waits for ``os.path.ismount``. Every
mount is taken down in a fixture finalizer even when the test fails: ``fusermount3 -u``, then
``-uz``, then the child is killed. A clean run also checks the child's exit status and that its
log holds no warning or error the test did not expect (pyfuse3 ``test/pytest_checklogs.py``).

Run as a script this module is the child:

* ``python fuse_helpers.py memfs MOUNTPOINT LOG [-o OPTS] [--capacity N]`` serves a fresh MemFS
  through :func:`fsproto.mount.daemon.mount` in the foreground;
* ``python fuse_helpers.py cli ARGS...`` runs the real ``fsproto`` CLI with the test-only
  ``memimg`` format registered (see :mod:`memfs`);
* ``python fuse_helpers.py faulty IMAGE MOUNTPOINT LOG CUT`` mounts the format on IMAGE through a
  FaultInjectingDevice that loses power after CUT device writes (``none``: never) and logs
  ``writes_seen=N`` when it stops, so a test can sweep every cut point of a workload.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
MOUNT_WAIT = 30.0


def is_mounted(mountpoint: str | os.PathLike[str]) -> bool:
    """True when *mountpoint* is in the mount table (works for dead mounts, unlike ismount)."""
    mp = os.path.abspath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mp for line in f)


def force_unmount(mountpoint: str | os.PathLike[str]) -> None:
    """fusermount3 -u, then -uz if busy; never raises."""
    for flags in (["-u"], ["-uz"]):
        if not is_mounted(mountpoint):
            return
        subprocess.run(["fusermount3", *flags, str(mountpoint)], capture_output=True, timeout=30)


def wait_for_mount(mountpoint: Path, proc: subprocess.Popen[bytes] | None, timeout: float = MOUNT_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"mount process exited with {proc.returncode} before mounting:\n{out}")
        if os.path.ismount(mountpoint):
            return
        time.sleep(0.02)
    raise AssertionError(f"{mountpoint} not mounted after {timeout} s")


def process_alive(pid: int) -> bool:
    """True while *pid* runs (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def bad_log_lines(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL"))
    ]


class MountedFs:
    """One running mount: the child process, its mount point and its log."""

    def __init__(self, mountpoint: Path, log: Path, proc: subprocess.Popen[bytes] | None) -> None:
        self.mountpoint = mountpoint
        self.log = log
        self.proc = proc
        self.expect_log_errors = False

    def path(self, name: str) -> Path:
        return self.mountpoint / name

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def unmount(self) -> None:
        """Clean unmount; asserts the child exits 0 and the mount is gone."""
        r = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        if self.proc is not None:
            assert self.proc.wait(timeout=30) == 0, self.log_text()
        assert not is_mounted(self.mountpoint)

    def cleanup(self) -> None:
        """Finalizer: never leaves a mount or a process behind."""
        force_unmount(self.mountpoint)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()


def start_memfs(tmp_path: Path, *opts: str, capacity: int | None = None, name: str = "mnt") -> MountedFs:
    mp = tmp_path / name
    mp.mkdir()
    log = tmp_path / f"{name}.log"
    cmd = [sys.executable, str(HERE / "fuse_helpers.py"), "memfs", str(mp), str(log), *opts]
    if capacity is not None:
        cmd += ["--capacity", str(capacity)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=PROJECT_ROOT)
    m = MountedFs(mp, log, proc)
    try:
        wait_for_mount(mp, proc)
    except BaseException:
        m.cleanup()
        raise
    return m


def start_cli_mount(image: Path, mp: Path, log: Path, *args: str) -> MountedFs:
    """``fsproto mount --foreground`` of *image* on *mp* in a child process, once it is mounted;
    torn down again if the mount never appears."""
    mp.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "fsproto", "mount", "--foreground", "--log", str(log), *args, str(image), str(mp)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=PROJECT_ROOT)
    m = MountedFs(mp, log, proc)
    try:
        wait_for_mount(mp, proc)
    except BaseException:
        m.cleanup()
        raise
    return m


def fsproto_cli(*args: str, memimg: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``fsproto`` CLI in a child process (optionally with the memimg test format)."""
    if memimg:
        cmd = [sys.executable, str(HERE / "fuse_helpers.py"), "cli", *args]
    else:
        cmd = [sys.executable, "-m", "fsproto", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


# -- CMS minidisks through the real CLI ----------------------------------------------------------
BLOCK = 4096


def make_image(path: Path, size: int = 8 << 20, block_size: int = BLOCK) -> Path:
    """A freshly formatted CMS minidisk image."""
    from fsproto.formats.cms import FORMAT
    from fsproto.rawdev import ImageFile

    with ImageFile.create(path, size) as dev:
        FORMAT.mkfs(dev, block_size=block_size, label="FUSE01")
    return path


def fsck_clean(image: Path) -> None:
    """Offline fsck of a CMS image must report no error."""
    from fsproto.formats.cms import FORMAT
    from fsproto.rawdev import ImageFile

    with ImageFile(image) as dev:
        report = FORMAT.fsck(dev)
    assert report.clean, "\n".join(map(str, report.problems))


class CmsMount:
    """Mount/unmount an image with the real CLI in the foreground, in a child process."""

    def __init__(self, tmp_path: Path, image: Path) -> None:
        self.image = image
        self.mp = tmp_path / "mnt"
        self.mp.mkdir(exist_ok=True)
        self.log = tmp_path / "mount.log"
        self.current: MountedFs | None = None
        self.expect_log_errors = False

    def mount(self, *args: str) -> Path:
        self.current = start_cli_mount(self.image, self.mp, self.log, *args)
        return self.mp

    def unmount(self) -> None:
        assert self.current is not None
        self.current.unmount()
        self.current.cleanup()
        self.current = None

    def cleanup(self) -> None:
        if self.current is not None:
            self.current.cleanup()
            self.current = None



@pytest.fixture
def memfs_mount(tmp_path: Path) -> Iterator[MountedFs]:
    """A fresh MemFS mounted at ``tmp_path/mnt``; unmounted and checked afterwards."""
    m = start_memfs(tmp_path)
    try:
        yield m
    finally:
        m.cleanup()
    if not m.expect_log_errors:
        assert not bad_log_lines(m.log), "\n".join(bad_log_lines(m.log))


def _serve_memfs(argv: list[str]) -> int:
    import argparse

    sys.path.insert(0, str(HERE))
    from memfs import MemFS

    from fsproto.mount.daemon import mount
    from fsproto.mount.daemon import setup_logging
    from fsproto.mount.options import MountOptions, parse_options

    p = argparse.ArgumentParser()
    p.add_argument("mountpoint")
    p.add_argument("log")
    p.add_argument("-o", action="append", default=[])
    p.add_argument("--capacity", type=int, default=512 << 20)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--populate", type=int, default=0, help="create N small files first (benchmarks)")
    a = p.parse_args(argv)
    setup_logging(a.log, debug=a.debug)
    options = parse_options(a.o, MountOptions(fsname="memfs", subtype="memfs"))
    fs = MemFS(capacity=a.capacity)
    for i in range(a.populate):
        fs.create(f"/F{i:07d}.DATA")
        fs.write(f"/F{i:07d}.DATA", 0, b"%d\n" % i)
    mount(fs, a.mountpoint, options)
    return 0


def _serve_faulty(argv: list[str]) -> int:
    from fsproto import formats
    from fsproto.mount.daemon import mount, setup_logging
    from fsproto.mount.options import MountOptions
    from fsproto.rawdev import FaultInjectingDevice, ImageFile

    image, mountpoint, log_path, cut = argv
    setup_logging(log_path, debug=False)
    fdev = FaultInjectingDevice(ImageFile(image, writable=True), cut_after_writes=None if cut == "none" else int(cut))
    fmt = formats.detect(fdev)
    fs = fmt.open(fdev)
    try:
        mount(fs, mountpoint, MountOptions(fsname="faulty", subtype=fmt.name), device=fdev)
    finally:
        logging.getLogger("fsproto.test").info("writes_seen=%d", fdev.writes_seen)
    return 0


def _run_cli(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    from memfs import MEMIMG

    from fsproto import formats
    from fsproto.cli import cli

    # Registering early would print other plugins' load warnings before the CLI configures
    # logging; they are not what these tests check.
    logging.getLogger("fsproto.formats").setLevel(logging.ERROR)
    formats.available()["memimg"] = MEMIMG
    return cli(argv)


if __name__ == "__main__":
    if sys.argv[1] == "memfs":
        sys.exit(_serve_memfs(sys.argv[2:]))
    if sys.argv[1] == "cli":
        sys.exit(_run_cli(sys.argv[2:]))
    if sys.argv[1] == "faulty":
        sys.exit(_serve_faulty(sys.argv[2:]))
    sys.exit(f"unknown mode {sys.argv[1]!r}")
