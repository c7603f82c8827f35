"""POSIX open-file semantics through real CMS and FAT mounts (the real ``fsproto mount`` CLI):
unlink, rename-over and truncate while a descriptor is open, renameat2 flags, negative entries,
xattr probes, F records under writeback, and a crash while a deleted file is open.

The reference for "what a kernel filesystem does" is the same syscall sequence on a directory
of the machine's own filesystem (``tmp_path``), run next to the mount; blocks freed after the
last close are checked with statvfs (``df``) against offline fsck's count of used blocks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from fuse_helpers import MountedFs, bad_log_lines, force_unmount, is_mounted, start_cli_mount

from fsproto.formats.cms import FORMAT as CMS
from fsproto.formats.fat import FORMAT as FAT
from fsproto.rawdev import ImageFile

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120)]

FORMATS = {"cms": CMS, "fat": FAT}
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
# What fsck says about an orphan's blocks after a crash (CMS: notices; FAT: lost clusters).
# CMS's label count ADTUSED includes the leaked blocks: a notice that follows from the leak.
LEAK = {"cms": "alloc-map-leak", "fat": "lost-clusters"}
LEAK_CODES = {"cms": {LEAK["cms"], "adtused"}, "fat": {LEAK["fat"]}}


def make(kind: str, path: Path, size: int = 8 << 20, block_size: int = 4096) -> Path:
    with ImageFile.create(path, size) as dev:
        if kind == "cms":
            CMS.mkfs(dev, block_size=block_size, label="OPEN01")
        else:
            FAT.mkfs(dev)
    return path


def fsck(kind: str, image: Path, *, repair: bool = False):
    with ImageFile(image, writable=repair) as dev:
        return FORMATS[kind].fsck(dev, repair=repair)


def used_blocks(kind: str, image: Path) -> int:
    with ImageFile(image) as dev:
        fs = FORMATS[kind].open(dev)
        try:
            s = fs.statfs()
            return s.total_blocks - s.free_blocks
        finally:
            fs.close()


@pytest.fixture(params=["cms", "fat"])
def mounted(request, tmp_path: Path) -> Iterator[tuple[str, Path, MountedFs]]:
    kind = request.param
    image = make(kind, tmp_path / f"{kind}.img")
    m = start_cli_mount(image, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        yield kind, image, m
        if is_mounted(m.mountpoint):  # tests that fsck the image unmount it themselves
            m.unmount()
    finally:
        m.cleanup()
    assert not bad_log_lines(m.log), "\n".join(bad_log_lines(m.log))


def both(ref: Path, mnt: Path, script: Callable[[Path], list]) -> list:
    """Run *script* on the reference directory and on the mount; their transcripts must match."""
    expected = script(ref)
    got = script(mnt)
    assert got == expected
    return got


def in_use(mp: Path) -> int:
    st = os.statvfs(mp)
    return st.f_blocks - st.f_bfree


# -- deleted or replaced while open -----------------------------------------------------------------
def unlink_while_open(root: Path) -> list:
    p = root / "OPEN.DATA"
    p.write_bytes(b"hello world " * 2000)
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        out: list = [p.exists(), os.pread(fd, 24, 0)]
        os.pwrite(fd, b"WRITTEN AFTER UNLINK", 30000)
        st = os.fstat(fd)
        out += [st.st_size, st.st_nlink, os.pread(fd, 40, 29990)]
        os.ftruncate(fd, 100)
        out += [os.fstat(fd).st_size, os.pread(fd, 200, 0)]
        p.write_bytes(b"a new file of the same name")  # does not disturb the open one
        out += [os.pread(fd, 12, 0), p.read_bytes()]
    finally:
        os.close(fd)
    os.unlink(p)
    return out


def test_unlink_while_open_keeps_data_until_last_close(mounted, tmp_path: Path):
    kind, image, m = mounted
    before = in_use(m.mountpoint)
    both(tmp_path, m.mountpoint, unlink_while_open)
    assert in_use(m.mountpoint) == before  # the orphan's blocks went at the last close
    m.unmount()
    m.cleanup()
    report = fsck(kind, image)
    assert report.clean and not report.problems, [str(p) for p in report.problems]
    assert used_blocks(kind, image) == before  # df and fsck/statfs offline agree


def rename_over_while_open(root: Path) -> list:
    old, new = root / "OLD.DATA", root / "NEW.DATA"
    old.write_bytes(b"the file that gets replaced " * 300)
    new.write_bytes(b"replacement")
    r = os.open(old, os.O_RDONLY)
    w = os.open(old, os.O_WRONLY)
    try:
        os.rename(new, old)
        out: list = [old.read_bytes(), new.exists(), os.pread(r, 28, 0)]
        os.pwrite(w, b"STILL WRITABLE", 28)
        out += [os.pread(r, 14, 28), os.fstat(r).st_size, os.fstat(r).st_nlink, old.read_bytes()]
        os.close(w)
        out.append(os.pread(r, 10, 8400 - 10))  # one descriptor closed, the other still reads
    finally:
        os.close(r)
    os.unlink(old)
    return out


def test_rename_over_while_open_keeps_the_replaced_file(mounted, tmp_path: Path):
    kind, image, m = mounted
    before = in_use(m.mountpoint)
    both(tmp_path, m.mountpoint, rename_over_while_open)
    assert in_use(m.mountpoint) == before
    m.unmount()
    m.cleanup()
    report = fsck(kind, image)
    assert report.clean and not report.problems, [str(p) for p in report.problems]


def truncate_while_open(root: Path) -> list:
    p = root / "TRUNC.DATA"
    p.write_bytes(bytes(range(256)) * 64)
    fd = os.open(p, os.O_RDWR)
    try:
        os.truncate(p, 1000)  # by path while a descriptor is open
        out: list = [os.fstat(fd).st_size, os.pread(fd, 2000, 0)]
        os.pwrite(fd, b"tail", 3000)  # a hole between 1000 and 3000 reads as zeros
        out += [os.fstat(fd).st_size, os.pread(fd, 4000, 0), p.stat().st_size]
    finally:
        os.close(fd)
    out.append(p.read_bytes())
    p.unlink()
    return out


def test_truncate_while_open(mounted, tmp_path: Path):
    both(tmp_path, mounted[2].mountpoint, truncate_while_open)


# -- renameat2 ---------------------------------------------------------------------------------------
def renameat2(a: Path, b: Path, flags: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flags) != 0:
        return ctypes.get_errno()
    return 0


def test_rename_noreplace(mounted, tmp_path: Path):
    def script(root: Path) -> list:
        a, b, c = root / "A.DATA", root / "B.DATA", root / "C.DATA"
        a.write_bytes(b"a")
        b.write_bytes(b"b")
        out = [renameat2(a, b, RENAME_NOREPLACE), a.read_bytes(), b.read_bytes()]
        out += [renameat2(a, c, RENAME_NOREPLACE), a.exists(), c.read_bytes()]
        for p in (b, c):
            p.unlink()
        return out

    assert both(tmp_path, mounted[2].mountpoint, script)[0] == errno.EEXIST


def test_rename_exchange_on_cms_swaps_in_one_directory_block(tmp_path: Path):
    image = make("cms", tmp_path / "x.img", block_size=512)  # 8 FSTs per directory block
    m = start_cli_mount(image, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        mp = m.mountpoint
        for i in range(12):
            (mp / f"F{i}.DATA").write_bytes(b"file %d" % i)
        fd = os.open(mp / "F1.DATA", os.O_RDONLY)  # an open descriptor follows its file
        assert renameat2(mp / "F1.DATA", mp / "F2.DATA", RENAME_EXCHANGE) == 0
        assert (mp / "F1.DATA").read_bytes() == b"file 2" and (mp / "F2.DATA").read_bytes() == b"file 1"
        assert os.pread(fd, 10, 0) == b"file 1"
        os.close(fd)
        # Slots 2 and 13 (F0 and F11) sit in different directory blocks: not atomic, so EINVAL.
        assert renameat2(mp / "F0.DATA", mp / "F11.DATA", RENAME_EXCHANGE) == errno.EINVAL
        assert (mp / "F0.DATA").read_bytes() == b"file 0"
        assert renameat2(mp / "F1.DATA", mp / "MISSING.DATA", RENAME_EXCHANGE) == errno.ENOENT
        m.unmount()
    finally:
        m.cleanup()
    report = fsck("cms", image)
    assert report.clean and not report.problems, [str(p) for p in report.problems]


def test_rename_exchange_on_fat_is_einval(tmp_path: Path):
    image = make("fat", tmp_path / "x.img")
    m = start_cli_mount(image, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        a, b = m.mountpoint / "a.txt", m.mountpoint / "b.txt"
        a.write_bytes(b"a")
        b.write_bytes(b"b")
        assert renameat2(a, b, RENAME_EXCHANGE) == errno.EINVAL
        assert (a.read_bytes(), b.read_bytes()) == (b"a", b"b")
        m.unmount()
    finally:
        m.cleanup()


# -- metadata caching --------------------------------------------------------------------------------
def test_negative_entry_of_another_spelling_is_dropped_on_create(mounted):
    """CMS and FAT match names case-insensitively: a cached "no such file" for one spelling must
    not hide a file created under another (the kernel only replaces the spelling it created)."""
    kind, _, m = mounted
    lower, upper = m.mountpoint / "later.txt", m.mountpoint / "LATER.TXT"
    assert not lower.exists() and not lower.exists()  # the second answer comes from the cache
    upper.write_bytes(b"made under another spelling")
    deadline = time.monotonic() + 5  # the invalidation is sent just after the reply
    while not lower.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lower.read_bytes() == b"made under another spelling"


def test_xattr_probes(mounted):
    kind, _, m = mounted
    f = m.mountpoint / "X.DATA"
    f.write_bytes(b"x")
    for name in ("security.capability", "security.selinux", "system.posix_acl_access", "user.none"):
        with pytest.raises(OSError) as e:
            os.getxattr(f, name)
        if kind == "cms" or not name.startswith("user."):
            # (the kernel's capability module answers security.capability itself once FUSE has no getxattr)
            assert e.value.errno in ((errno.ENODATA,) if kind == "cms" else (errno.ENODATA, errno.EOPNOTSUPP))
        else:
            # FAT stores no attributes: the kernel was told once (ENOSYS) and asks no more.
            assert e.value.errno == errno.EOPNOTSUPP
    if kind == "cms":
        assert os.getxattr(f, "user.record_format") == b"V"


def test_f_records_under_writeback_show_the_padded_size(tmp_path: Path):
    """An F file grows in whole records: after writing 10 bytes to an F 80 file, stat says 80
    at once (direct I/O file, padding stored into the kernel), and the bytes read back padded."""
    image = make("cms", tmp_path / "f.img")
    m = start_cli_mount(image, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        f = m.mountpoint / "FIX.DATA"
        f.touch()
        os.setxattr(f, "user.record_format", b"F")
        os.setxattr(f, "user.record_lrecl", b"80")
        fd = os.open(f, os.O_WRONLY)
        try:
            os.write(fd, b"0123456789")
            assert os.fstat(fd).st_size == 80
            os.write(fd, b"abc")  # continues at the descriptor's offset (10), inside the record
            assert os.fstat(fd).st_size == 80
        finally:
            os.close(fd)
        assert f.read_bytes() == b"0123456789abc" + bytes(67)
        m.unmount()
    finally:
        m.cleanup()


# -- crash with an orphan open ------------------------------------------------------------------------
def test_crash_with_deleted_file_open_loses_nothing_and_fsck_repairs_only_the_orphan(tmp_path: Path):
    for kind in ("cms", "fat"):
        image = make(kind, tmp_path / f"{kind}-crash.img")
        m = start_cli_mount(image, tmp_path / f"mnt-{kind}", tmp_path / f"{kind}.log")
        try:
            mp = m.mountpoint
            (mp / "KEEP.DATA").write_bytes(b"k" * 20000)
            (mp / "GONE.DATA").write_bytes(b"g" * 50000)
            fd = os.open(mp / "GONE.DATA", os.O_RDWR)
            os.unlink(mp / "GONE.DATA")
            os.pwrite(fd, b"more" * 5000, 50000)
            os.fsync(fd)  # everything durable, then the daemon dies with the orphan open
            assert m.proc is not None
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait(timeout=30)
            try:
                os.close(fd)
            except OSError:  # ENOTCONN: the daemon is gone
                pass
        finally:
            force_unmount(m.mountpoint)
            m.cleanup()
        report = fsck(kind, image)
        # Only the orphan's blocks are left over: allocated, referenced by nothing.
        codes = {p.code for p in report.problems}
        assert codes <= LEAK_CODES[kind] and LEAK[kind] in codes, [str(p) for p in report.problems]
        if kind == "fat":
            assert "35 cluster(s)" in str(report.problems[0])  # 70,000 bytes in 2 KiB clusters
        fsck(kind, image, repair=True)
        after = fsck(kind, image)
        assert after.clean and not after.problems, [str(p) for p in after.problems]
        with ImageFile(image) as dev:
            fs = FORMATS[kind].open(dev)
            assert [e.name for e in fs.listdir("/")] == ["KEEP.DATA"]
            assert fs.read("/KEEP.DATA", 0, 1 << 20) == b"k" * 20000
            fs.close()
        if kind == "fat":
            r = subprocess.run(["fsck.vfat", "-n", str(image)], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout
