"""pjdfstest's name-length and truncate expectations, as plain pytest on real CMS and FAT mounts.

pjdfstest is not in the suite (not packaged in Debian 12), but its groups ``open/02``, ``open/03``,
``truncate/00``, ``02``, ``03``, ``04``, ``09``, ``12``, ``13`` and ``ftruncate/00``, ``13`` apply to
both formats. Its names are ``NAME_MAX`` characters (from pathconf, which a FUSE mount answers from
statfs ``f_namemax``): 255 for FAT, 17 for CMS, whose names are adapted to ``NAME.TYPE``
(shared/specs/fuse.md). Mounted with ``-o allow_other`` as pjdfstest needs.

Where pjdfstest and the kernel's vfat disagree the kernel is FAT's judge (docs/errno.md): a
*lookup* of a name over 255 characters is ENOENT on vfat, where pjdfstest expects ENAMETOOLONG.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Iterator

import pytest
from fuse_helpers import MountedFs, start_cli_mount

from fsproto.cli import cli

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300)]


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


@pytest.fixture(params=["cms", "fat"], scope="module")
def mnt(request, tmp_path_factory) -> Iterator[MountedFs]:
    tmp = tmp_path_factory.mktemp(f"pjd-{request.param}")
    img = tmp / f"disk.{request.param}"
    assert cli(["mkfs", "--format", request.param, "--size", "16M", str(img)]) == 0
    m = start_cli_mount(img, tmp / "mnt", tmp / "mount.log", "-o", "allow_other")
    m.fmt = request.param  # type: ignore[attr-defined]
    try:
        yield m
        m.unmount()
    finally:
        m.cleanup()


def names(m: MountedFs) -> tuple[str, str]:
    """(longest name the mount takes, one character longer), as pjdfstest's namegen_max."""
    name_max = os.pathconf(m.mountpoint, "PC_NAME_MAX")
    if name_max == 17:  # CMS: NAME.TYPE, 8 + 1 + 8
        return "ABCDEFGH.ABCDEFGH", "ABCDEFGHI.ABCDEFGH"
    assert name_max == 255
    return "x" * 251 + ".txt", "x" * 252 + ".txt"


def test_name_max_is_what_the_format_holds(mnt: MountedFs) -> None:
    assert os.pathconf(mnt.mountpoint, "PC_NAME_MAX") == {"cms": 17, "fat": 255}[mnt.fmt]  # type: ignore[attr-defined]


def test_open_02_create_name_max_and_one_more(mnt: MountedFs) -> None:
    nx, nxx = names(mnt)
    os.close(os.open(mnt.path(nx), os.O_CREAT | os.O_WRONLY, 0o644))
    assert os.stat(mnt.path(nx)).st_size == 0
    os.unlink(mnt.path(nx))
    assert errno_of(os.open, mnt.path(nxx), os.O_CREAT | os.O_WRONLY, 0o644) == errno.ENAMETOOLONG
    assert not os.path.exists(mnt.path(nxx[:-1]))  # nothing truncated and created instead


def test_truncate_02_names_over_name_max(mnt: MountedFs) -> None:
    nx, nxx = names(mnt)
    os.close(os.open(mnt.path(nx), os.O_CREAT | os.O_WRONLY, 0o644))
    os.truncate(mnt.path(nx), 123)
    assert os.stat(mnt.path(nx)).st_size == 123
    os.unlink(mnt.path(nx))
    fat = mnt.fmt == "fat"  # type: ignore[attr-defined]
    # pjdfstest: ENAMETOOLONG; kernel vfat's lookup: ENOENT (the judge for FAT).
    want = errno.ENOENT if fat else errno.ENAMETOOLONG
    assert errno_of(os.truncate, mnt.path(nxx), 123) == want
    assert errno_of(os.unlink, mnt.path(nxx)) == want
    assert errno_of(os.stat, mnt.path(nxx)) == want


def test_open_03_truncate_03_path_over_path_max(mnt: MountedFs) -> None:
    long_path = str(mnt.mountpoint) + "/" + "/".join(["d"] * 2100)  # > PATH_MAX (4096)
    assert errno_of(os.open, long_path, os.O_CREAT | os.O_WRONLY, 0o644) == errno.ENAMETOOLONG
    assert errno_of(os.truncate, long_path, 0) == errno.ENAMETOOLONG


def test_truncate_00_grows_with_zeros_shrinks_and_updates_times(mnt: MountedFs) -> None:
    p = mnt.path("TRUNC.DAT")
    p.write_bytes(b"0123456789")
    os.utime(p, (1_000_000_000, 1_000_000_000))
    before = os.stat(p)
    # pjdfstest sleeps between the two stats: under the writeback cache the kernel stamps ctime
    # itself from its coarse clock (one tick is several ms), so an immediate truncate can share it.
    time.sleep(0.05)
    os.truncate(p, 1234567)
    st = os.stat(p)
    assert st.st_size == 1234567
    assert st.st_mtime > before.st_mtime and st.st_ctime > before.st_ctime  # truncate/00.t checks both
    with open(p, "rb") as f:
        assert f.read(10) == b"0123456789"
        f.seek(1234567 - 5)
        assert f.read() == b"\0" * 5
    os.truncate(p, 567)
    assert os.stat(p).st_size == 567
    assert p.read_bytes() == b"0123456789" + b"\0" * 557
    os.truncate(p, 0)
    assert os.stat(p).st_size == 0 and p.read_bytes() == b""
    p.unlink()


def test_ftruncate_00_through_an_open_descriptor(mnt: MountedFs) -> None:
    p = mnt.path("FTRUNC.DAT")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"abc")
        os.ftruncate(fd, 1000)
        assert os.fstat(fd).st_size == 1000 and os.stat(p).st_size == 1000
        os.ftruncate(fd, 1)
        assert os.pread(fd, 10, 0) == b"a"
    finally:
        os.close(fd)
    fd = os.open(p, os.O_RDONLY)
    try:  # ftruncate/13: a descriptor not open for writing
        assert errno_of(os.ftruncate, fd, 0) == errno.EINVAL
    finally:
        os.close(fd)
    assert os.stat(p).st_size == 1
    p.unlink()


def test_truncate_04_09_missing_file_and_a_directory(mnt: MountedFs) -> None:
    assert errno_of(os.truncate, mnt.path("NOSUCH.FILE"), 0) == errno.ENOENT
    assert errno_of(os.truncate, mnt.mountpoint, 0) == errno.EISDIR


def test_truncate_12_13_past_the_maximum_file_size_and_negative(mnt: MountedFs) -> None:
    p = mnt.path("BIG.DAT")
    p.write_bytes(b"x")
    assert errno_of(os.truncate, p, 999999999999999) == errno.EFBIG  # pjdfstest's length
    assert errno_of(os.truncate, p, -1) == errno.EINVAL
    fd = os.open(p, os.O_RDWR)
    try:
        assert errno_of(os.ftruncate, fd, 999999999999999) == errno.EFBIG
    finally:
        os.close(fd)
    assert p.read_bytes() == b"x"
    p.unlink()
