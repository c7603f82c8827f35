"""The FUSE adapter against MemFS through a real kernel mount: syscalls, errno, caches, xattrs."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from pathlib import Path

import pytest
from fuse_helpers import MountedFs, bad_log_lines, memfs_mount, start_memfs  # noqa: F401 - fixture

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120)]


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    raise AssertionError(f"{fn.__name__}{args} did not fail")


def test_write_read_append_truncate_rename_unlink(memfs_mount: MountedFs):
    p = memfs_mount.path("a.bin")
    p.write_bytes(b"hello")
    with open(p, "ab") as f:
        f.write(b" world")
    assert p.read_bytes() == b"hello world"
    with open(p, "r+b") as f:
        f.seek(20)
        f.write(b"!")
    assert p.read_bytes() == b"hello world" + bytes(9) + b"!"
    os.truncate(p, 5)
    assert p.read_bytes() == b"hello" and p.stat().st_size == 5
    q = memfs_mount.path("b.bin")
    p.rename(q)
    assert not p.exists() and q.read_bytes() == b"hello"
    q.unlink()
    assert sorted(os.listdir(memfs_mount.mountpoint)) == []


def test_subdirectories(memfs_mount: MountedFs):
    d = memfs_mount.path("d")
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("x")
    d.rename(memfs_mount.path("e"))
    assert memfs_mount.path("e/sub/f").read_text() == "x"
    assert errno_of(os.rmdir, memfs_mount.path("e")) == errno.ENOTEMPTY
    assert errno_of(os.unlink, memfs_mount.path("e/sub")) == errno.EISDIR
    assert errno_of(os.open, memfs_mount.path("e/sub/f/x"), os.O_RDONLY) == errno.ENOTDIR


def test_errno_mapping(tmp_path: Path):
    m = start_memfs(tmp_path, capacity=1 << 20)
    try:
        mp = m.mountpoint
        assert errno_of(os.stat, mp / "missing") == errno.ENOENT
        (mp / "f").write_bytes(b"1")
        assert errno_of(os.open, mp / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
        assert errno_of(os.open, mp / ("n" * 300), os.O_CREAT | os.O_WRONLY) == errno.ENAMETOOLONG
        assert errno_of(os.truncate, mp / "f", 2 << 20) == errno.EFBIG
        with open(mp / "big", "wb") as f:
            f.write(bytes(900 << 10))
        assert errno_of((mp / "big2").write_bytes, bytes(200 << 10)) == errno.ENOSPC
        assert errno_of(os.setxattr, mp / "f", "trusted.x", b"1") == errno.EINVAL
        assert errno_of(os.getxattr, mp / "f", "user.none") == errno.ENODATA
        assert errno_of(os.rename, mp / "f", mp / "f" / "g") == errno.ENOTDIR
    finally:
        m.cleanup()
    assert not bad_log_lines(m.log)


def test_a_failing_handler_fails_one_call_and_the_mount_keeps_answering(memfs_mount: MountedFs):
    memfs_mount.expect_log_errors = True
    mp = memfs_mount.mountpoint
    (mp / "boom.txt").write_text("never read back")
    (mp / "corrupt.txt").write_text("never read back")
    (mp / "good.txt").write_text("fine")
    for _ in range(3):  # repeatedly: the main loop must survive every time
        assert errno_of((mp / "boom.txt").read_bytes) == errno.EIO
        assert errno_of((mp / "corrupt.txt").read_bytes) == errno.EIO
    assert (mp / "good.txt").read_text() == "fine"
    assert sorted(os.listdir(mp)) == ["boom.txt", "corrupt.txt", "good.txt"]
    (mp / "after.txt").write_text("still writable")
    assert (mp / "after.txt").read_text() == "still writable"
    log = memfs_mount.log_text()
    assert "Traceback" in log and "RuntimeError: injected bug" in log
    # FormatError is logged as one line naming device, block and offset.
    assert "memfs, block 1234, offset 56, FST: injected corruption" in log


def test_readdir_offsets_stable_while_directory_changes(memfs_mount: MountedFs):
    mp = memfs_mount.mountpoint
    names = [f"file-{i:05d}-with-a-longish-name" for i in range(3000)]
    for n in names:
        (mp / n).touch()
    seen: list[str] = []
    removed: set[str] = set()
    with os.scandir(mp) as it:
        for i, entry in enumerate(it):
            seen.append(entry.name)
            if i == 100:
                # Change the directory under the open listing: delete entries not yet seen
                # and some already seen, add new ones.
                for n in names[2000:2500] + names[:50]:
                    os.unlink(mp / n)
                    removed.add(n)
                for j in range(300):
                    (mp / f"new-{j}").touch()
    assert len(seen) == len(set(seen)), "an entry was reported twice"
    untouched = set(names) - removed
    assert untouched <= set(seen), f"{len(untouched - set(seen))} untouched entries skipped"


def test_forget_under_memory_pressure_keeps_open_files_and_names_valid(memfs_mount: MountedFs):
    mp = memfs_mount.mountpoint
    for i in range(200):
        (mp / f"f{i}").write_bytes(str(i).encode())
    fds = [os.open(mp / f"f{i}", os.O_RDWR) for i in range(0, 200, 20)]
    try:
        # Dentry/inode reclaim makes the kernel send FORGET for everything it can drop.
        Path("/proc/sys/vm/drop_caches").write_text("2")
        for i, fd in zip(range(0, 200, 20), fds):
            assert os.pread(fd, 10, 0) == str(i).encode()
            os.pwrite(fd, b"X", 0)
        for i in range(200):
            expect = b"X" + str(i).encode()[1:] if i % 20 == 0 else str(i).encode()
            assert (mp / f"f{i}").read_bytes() == expect
    finally:
        for fd in fds:
            os.close(fd)


def test_xattrs_pass_through(memfs_mount: MountedFs):
    p = memfs_mount.path("x")
    p.touch()
    os.setxattr(p, "user.record_format", b"F")
    os.setxattr(p, "user.record_lrecl", b"80")
    assert os.getxattr(p, "user.record_format") == b"F"
    assert sorted(os.listxattr(p)) == ["user.record_format", "user.record_lrecl"]
    os.removexattr(p, "user.record_format")
    assert os.listxattr(p) == ["user.record_lrecl"]
    out = subprocess.run(["getfattr", "-n", "user.record_lrecl", "--only-values", str(p)], capture_output=True)
    assert out.stdout == b"80"


def test_statfs_feeds_df(memfs_mount: MountedFs):
    memfs_mount.path("f").write_bytes(bytes(1 << 20))
    st = os.statvfs(memfs_mount.mountpoint)
    assert st.f_bsize == 4096 and st.f_blocks == (512 << 20) // 4096
    assert st.f_bfree == st.f_blocks - 256
    assert st.f_namemax == 255
    df = subprocess.run(["df", "-P", str(memfs_mount.mountpoint)], capture_output=True, text=True, check=True)
    assert df.stdout.splitlines()[1].split()[0] == "memfs"


def test_timestamps_and_permissions(memfs_mount: MountedFs):
    p = memfs_mount.path("t")
    p.touch()
    os.utime(p, ns=(1_000_000_000_123, 1_234_567_890_123_456_789))
    assert p.stat().st_mtime_ns == 1_234_567_890_123_456_789
    subprocess.run(["touch", "-d", "2001-02-03 04:05:06 UTC", str(p)], check=True)
    assert p.stat().st_mtime == 981173106
    mode = p.stat().st_mode
    os.chmod(p, mode)  # no change: accepted (cp -p, editors)
    os.chmod(p, 0o600)  # bits the mount options decide: accepted and not stored, as vfat does
    assert p.stat().st_mode == mode
    assert errno_of(os.chmod, p, 0o4644) == errno.EPERM  # setuid: vfat refuses
    os.chown(p, os.getuid(), os.getgid())
    assert errno_of(os.chown, p, 12345, -1) == errno.EPERM


def test_uid_gid_umask_options(tmp_path: Path):
    m = start_memfs(tmp_path, "-o", "uid=1234,gid=4321,umask=027", "-o", "allow_other,default_permissions")
    try:
        line = next(l for l in Path("/proc/self/mountinfo").read_text().splitlines() if l.split()[4] == str(m.mountpoint))
        assert "allow_other" in line and "default_permissions" in line
        p = m.path("f")
        p.touch()
        st = p.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 4321, 0o640)
        assert m.mountpoint.stat().st_mode & 0o777 == 0o750
    finally:
        m.cleanup()


def test_read_only_option_gives_erofs(tmp_path: Path):
    m = start_memfs(tmp_path, "-o", "ro")
    try:
        assert errno_of(os.open, m.path("f"), os.O_CREAT | os.O_WRONLY) == errno.EROFS
        assert errno_of(os.mkdir, m.path("d")) == errno.EROFS
    finally:
        m.cleanup()


def test_editor_style_replace_and_rename_of_open_file(memfs_mount: MountedFs):
    mp = memfs_mount.mountpoint
    (mp / "doc.txt").write_text("old\n")
    old_ino = (mp / "doc.txt").stat().st_ino
    (mp / ".doc.txt.swp").write_text("new contents\n")
    os.rename(mp / ".doc.txt.swp", mp / "doc.txt")
    assert (mp / "doc.txt").read_text() == "new contents\n"
    assert (mp / "doc.txt").stat().st_ino != old_ino
    assert sorted(os.listdir(mp)) == ["doc.txt"]
    # Renaming a file that is open: the descriptor follows it.
    fd = os.open(mp / "doc.txt", os.O_RDWR)
    try:
        os.rename(mp / "doc.txt", mp / "moved.txt")
        os.pwrite(fd, b"NEW", 0)
    finally:
        os.close(fd)
    assert (mp / "moved.txt").read_text() == "NEW contents\n"


def test_concurrent_readers_and_writers(memfs_mount: MountedFs):
    mp = memfs_mount.mountpoint
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            data = bytes([k]) * (64 << 10)
            p = mp / f"w{k}"
            for _ in range(20):
                p.write_bytes(data)
                assert p.read_bytes() == data
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_clean_unmount_exits_zero(tmp_path: Path):
    m = start_memfs(tmp_path)
    try:
        m.path("f").write_text("x")
        m.unmount()
    finally:
        m.cleanup()
