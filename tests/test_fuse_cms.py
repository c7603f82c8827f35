"""CMS minidisks through ``fsproto mount`` (the real CLI in a child process).

Every test ends with a clean unmount and an offline fsck that must report the disk clean.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from fuse_helpers import BLOCK, CmsMount, bad_log_lines, fsck_clean, fsproto_cli, is_mounted, make_image

from fsproto.formats.cms import FORMAT
from fsproto.rawdev import ImageFile

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300)]

@pytest.fixture
def cms(tmp_path: Path) -> Iterator[CmsMount]:
    """An 8 MiB CMS minidisk (4 KiB blocks) and its mounter; fsck must be clean afterwards."""
    m = CmsMount(tmp_path, make_image(tmp_path / "disk.img"))
    try:
        yield m
        if m.current is not None:
            m.unmount()
    finally:
        m.cleanup()
    assert not is_mounted(m.mp)
    fsck_clean(m.image)
    if not m.expect_log_errors:
        assert not bad_log_lines(m.log), "\n".join(bad_log_lines(m.log))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    raise AssertionError(f"{fn}{args} did not fail")


def test_cp_in_and_out_checksums_survive_remount(cms: CmsMount, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    rng = __import__("random").Random(5)
    sizes = {"EMPTY.BIN": 0, "ONE.BIN": 1, "BLOCK.BIN": 4096, "ODD.BIN": 4097, "MID.BIN": 100_000, "BIG.BIN": 1_500_000}
    for name, size in sizes.items():
        (src / name).write_bytes(rng.randbytes(size))
    mp = cms.mount()
    subprocess.run(["cp", *map(str, sorted(src.iterdir())), str(mp)], check=True)
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(mp), str(out)], check=True)
    for name in sizes:
        assert sha(mp / name) == sha(src / name) == sha(out / name), name
    assert sorted(os.listdir(mp)) == sorted(sizes)
    cms.unmount()
    fsck_clean(cms.image)
    mp = cms.mount()
    for name in sizes:
        assert sha(mp / name) == sha(src / name), name
        assert (mp / name).stat().st_size == sizes[name]


def test_read_only_mount_gives_erofs(cms: CmsMount):
    mp = cms.mount()
    (mp / "KEEP.TXT").write_bytes(b"kept")
    cms.unmount()
    before = cms.image.read_bytes()
    mp = cms.mount("--ro")
    assert (mp / "KEEP.TXT").read_bytes() == b"kept"
    assert errno_of(os.open, mp / "NEW.TXT", os.O_CREAT | os.O_WRONLY) == errno.EROFS
    assert errno_of(os.open, mp / "KEEP.TXT", os.O_WRONLY) == errno.EROFS
    assert errno_of(os.unlink, mp / "KEEP.TXT") == errno.EROFS
    assert errno_of(os.truncate, mp / "KEEP.TXT", 0) == errno.EROFS
    cms.unmount()
    assert cms.image.read_bytes() == before


def test_corrupt_image_fails_with_one_line(tmp_path: Path):
    image = make_image(tmp_path / "bad.img")
    raw = bytearray(image.read_bytes())
    struct.pack_into(">I", raw, 2 * BLOCK + 16, 0x00FFFFFF)  # ADTDOP: directory past the end
    image.write_bytes(bytes(raw))
    mp = tmp_path / "mnt"
    mp.mkdir()
    r = fsproto_cli("mount", str(image), str(mp), memimg=False)
    assert r.returncode == 4, r.stderr
    assert r.stderr.startswith("fsproto: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert str(image) in r.stderr
    assert not is_mounted(mp)
    assert image.read_bytes() == bytes(raw)  # nothing written


def test_device_full_gives_enospc_and_stays_fsck_clean(tmp_path: Path):
    m = CmsMount(tmp_path, make_image(tmp_path / "small.img", size=1 << 20))
    try:
        mp = m.mount()
        (mp / "FIRST.BIN").write_bytes(b"a" * 100_000)
        with pytest.raises(OSError) as e:
            with open(mp / "HUGE.BIN", "wb") as f:
                for _ in range(64):
                    f.write(os.urandom(64 << 10))
        assert e.value.errno == errno.ENOSPC
        # Sizes far past the device fail at once, without allocating anything.
        assert errno_of(os.truncate, mp / "FIRST.BIN", 1 << 40) in (errno.ENOSPC, errno.EFBIG)
        assert (mp / "FIRST.BIN").read_bytes() == b"a" * 100_000
        (mp / "HUGE.BIN").unlink()
        (mp / "AFTER.BIN").write_bytes(b"b" * 10_000)  # space is usable again
        m.unmount()
    finally:
        m.cleanup()
    fsck_clean(m.image)
    assert not bad_log_lines(m.log)


def test_record_xattrs(cms: CmsMount):
    mp = cms.mount()
    p = mp / "FIXED.DATA"
    p.touch()
    assert os.getxattr(p, "user.record_format") == b"V"
    assert set(os.listxattr(p)) >= {"user.record_format", "user.record_lrecl", "user.file_mode"}
    os.setxattr(p, "user.record_format", b"F")
    os.setxattr(p, "user.record_lrecl", b"80")
    with open(p, "wb") as f:
        f.write(b"x" * 100)  # one and a quarter records: the last is zero-padded to LRECL
    # The kernel was told to forget its idea of the size (100): stat and read see 160.
    assert p.stat().st_size == 160
    assert p.read_bytes() == b"x" * 100 + bytes(60)
    assert errno_of(os.setxattr, p, "user.record_lrecl", b"40") == errno.EINVAL  # has records now
    cms.unmount()
    mp = cms.mount()
    assert os.getxattr(mp / "FIXED.DATA", "user.record_lrecl") == b"80"


def test_text_mode(cms: CmsMount):
    mp = cms.mount("--text")
    (mp / "PROFILE.EXEC").write_text("/* REXX */\nsay 'hello'\n\nexit\n")
    assert (mp / "PROFILE.EXEC").read_text() == "/* REXX */\nsay 'hello'\n\nexit\n"
    with open(mp / "PROFILE.EXEC", "a") as f:
        f.write("ende\n")
    assert (mp / "PROFILE.EXEC").read_text().endswith("exit\nende\n")
    cms.unmount()
    with ImageFile(cms.image) as dev:
        fs = FORMAT.open(dev)  # binary view: EBCDIC records, no line ends
        st = fs.stat("/PROFILE.EXEC")
        # The empty line is stored as one blank (a V record cannot be empty).
        assert fs.read("/PROFILE.EXEC", 0, st.size) == "/* REXX */say 'hello' exitende".encode("cp1047")
    mp = cms.mount("--text", "--codepage", "cp037")
    assert (mp / "PROFILE.EXEC").read_text().startswith("/* REXX */\n")


def test_shell_behaviour(cms: CmsMount, tmp_path: Path):
    mp = cms.mount()
    (mp / "hello.txt").write_text("one\n")  # CMS names are upper case: lower case is folded
    assert os.listdir(mp) == ["HELLO.TXT"]
    assert (mp / "Hello.Txt").read_text() == "one\n"
    with open(mp / "HELLO.TXT", "a") as f:
        f.write("two\n")
    subprocess.run(f"echo three >> {mp}/HELLO.TXT", shell=True, check=True)
    assert (mp / "HELLO.TXT").read_text() == "one\ntwo\nthree\n"
    subprocess.run(["mv", str(mp / "HELLO.TXT"), str(mp / "BYE.TXT")], check=True)
    subprocess.run(["truncate", "-s", "4", str(mp / "BYE.TXT")], check=True)
    assert (mp / "BYE.TXT").read_text() == "one\n"
    subprocess.run(["truncate", "-s", "10", str(mp / "BYE.TXT")], check=True)
    assert (mp / "BYE.TXT").read_bytes() == b"one\n" + bytes(6)
    subprocess.run(["touch", "-d", "2001-02-03 04:05:06", str(mp / "BYE.TXT")], check=True)
    subprocess.run(["touch", str(mp / "NEW.FILE")], check=True)
    st = (mp / "BYE.TXT").stat()
    assert st.st_mtime == __import__("time").mktime((2001, 2, 3, 4, 5, 6, 0, 0, -1))
    ls = subprocess.run(["ls", "-l", "--time-style=+%Y-%m-%d %H:%M:%S", str(mp)], capture_output=True, text=True, check=True)
    assert "2001-02-03 04:05:06 BYE.TXT" in ls.stdout
    assert ls.stderr == ""  # e.g. no complaint about the root directory's ACL attribute
    assert os.listxattr(mp) == []
    # An editor: write a temp file, rename it over the original.
    (mp / "BYE.TMP").write_text("edited\n")
    os.rename(mp / "BYE.TMP", mp / "BYE.TXT")
    assert (mp / "BYE.TXT").read_text() == "edited\n"
    subprocess.run(["rm", str(mp / "NEW.FILE")], check=True)
    assert sorted(os.listdir(mp)) == ["BYE.TXT"]
    df = subprocess.run(["df", "-P", str(mp)], capture_output=True, text=True, check=True).stdout.splitlines()[1].split()
    assert df[0] == str(cms.image) and int(df[1]) == 8 << 10  # 1K-blocks
    st = os.statvfs(mp)
    assert st.f_bsize == BLOCK and st.f_namemax >= 17


def test_names_cms_cannot_hold(cms: CmsMount):
    mp = cms.mount()
    assert errno_of(os.open, mp / "TOOLONGNAME.TXT", os.O_CREAT | os.O_WRONLY) == errno.ENAMETOOLONG
    assert errno_of(os.open, mp / "A.B.C", os.O_CREAT | os.O_WRONLY) == errno.EINVAL
    assert errno_of(os.open, mp / "NODOT", os.O_CREAT | os.O_WRONLY) == errno.EINVAL
    (mp / "OK.TXT").touch()
    assert errno_of(os.rename, mp / "OK.TXT", mp / "BAD*NAME.TXT") == errno.EINVAL
    assert errno_of(os.mkdir, mp / "DIR.X") in (errno.EOPNOTSUPP, errno.EPERM)
    assert os.listdir(mp) == ["OK.TXT"]


def test_many_files_listing(cms: CmsMount):
    mp = cms.mount()
    names = {f"F{i:05d}.DATA" for i in range(600)}
    for n in names:
        (mp / n).write_bytes(n.encode())
    assert set(os.listdir(mp)) == names
    for n in list(names)[::37]:
        assert (mp / n).read_bytes() == n.encode()
    for n in list(names)[:300]:
        (mp / n).unlink()
    cms.unmount()
    mp = cms.mount()
    assert set(os.listdir(mp)) == set(list(names)[300:])


def test_concurrent_readers_and_writers(cms: CmsMount):
    import threading

    mp = cms.mount()
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(k: int) -> None:
        try:
            p = mp / f"W{k}.DATA"
            expect = b""
            for i in range(30):
                chunk = bytes([65 + k]) * (3000 + 997 * i)
                with open(p, "ab") as f:
                    f.write(chunk)
                expect += chunk
                assert p.read_bytes() == expect
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader() -> None:
        try:
            while not stop.is_set():
                for name in os.listdir(mp):
                    try:
                        data = (mp / name).read_bytes()
                    except FileNotFoundError:
                        continue
                    assert set(data) <= {65 + int(name[1])}, name
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
