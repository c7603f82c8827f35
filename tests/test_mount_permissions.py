"""A shared mount (``-o allow_other``) checks permissions; owners and modes come from mount options.

The real CLI mounts CMS and FAT images in a child process; a second child runs as uid/gid 65534
(``nobody``, through ``setpriv --reuid --regid --clear-groups``) and tries what
pjdfstest's permission cases try on a root-owned 0644 file: reads succeed, writes, truncates,
renames, unlinks, creates, chmod/chown and time changes are refused by the kernel
(``default_permissions``, implied by ``allow_other``). With ``no_default_permissions`` the same
child can write, which shows the checks come from the option. A non-root user mounts through
fusermount3 (setuid) and unmounts with ``fsproto umount``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from fuse_helpers import PROJECT_ROOT, force_unmount, is_mounted, start_cli_mount

from fsproto.cli import cli
from fsproto.cli.fs_actions import open_fs

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300)]

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

# Run as NOBODY: every operation on FILE in the mount MNT, each reported as 0 or its errno.
_CHILD = r"""
import errno, json, os, sys
mnt, name = sys.argv[1], sys.argv[2]
path = os.path.join(mnt, name)
out = {}
def attempt(op, fn):
    try:
        fn()
        out[op] = 0
    except OSError as e:
        out[op] = e.errno
def read():
    with open(path, "rb") as f:
        assert f.read() == b"root's data\n"
def close_open(flags):
    os.close(os.open(path, flags))
attempt("stat", lambda: os.stat(path))
attempt("read", read)
attempt("open_write", lambda: close_open(os.O_WRONLY))
attempt("open_rdwr_trunc", lambda: close_open(os.O_RDWR | os.O_TRUNC))
attempt("truncate", lambda: os.truncate(path, 0))
attempt("rename", lambda: os.rename(path, os.path.join(mnt, "STOLEN.FILE")))
attempt("unlink", lambda: os.unlink(path))
attempt("create", lambda: close_open(os.O_WRONLY | os.O_CREAT | os.O_EXCL))
attempt("create_other", lambda: os.close(os.open(os.path.join(mnt, "MINE.FILE"), os.O_WRONLY | os.O_CREAT, 0o644)))
attempt("chmod", lambda: os.chmod(path, 0o666))
attempt("chown", lambda: os.chown(path, os.getuid(), os.getgid()))
attempt("utime_now", lambda: os.utime(path, None))
attempt("utime_set", lambda: os.utime(path, (1, 1)))
print(json.dumps(out))
"""

REFUSED = {  # what the kernel's generic_permission/setattr_prepare answer a stranger
    "open_write": errno.EACCES,
    "open_rdwr_trunc": errno.EACCES,
    "truncate": errno.EACCES,
    "rename": errno.EACCES,  # needs write permission on the (0755, root's) directory
    "unlink": errno.EACCES,
    "create_other": errno.EACCES,
    "chmod": errno.EPERM,  # not the owner
    "chown": errno.EPERM,
    "utime_now": errno.EACCES,  # "now" needs write permission
    "utime_set": errno.EPERM,  # explicit times need ownership
}


def _as_nobody(mnt: Path, name: str) -> dict[str, int]:
    r = subprocess.run([*AS_NOBODY, sys.executable, "-c", _CHILD, str(mnt), name], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    return {k: v for k, v in json.loads(r.stdout).items()}


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="fsproto-perm-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        force_unmount(d / "mnt")
        shutil.rmtree(d, ignore_errors=True)


def _image(tmp: Path, fmt: str) -> Path:
    img = tmp / f"disk.{fmt}"
    assert cli(["mkfs", "--format", fmt, "--size", "8M", str(img)]) == 0
    src = tmp / "ROOT.FILE"
    src.write_bytes(b"root's data\n")
    assert cli(["put", str(img), str(src)]) == 0
    return img


# FAT offers rwx like the kernel's vfat, so fmask=133 gives the 0644 files of this test.
MASKS = {"cms": "allow_other", "fat": "allow_other,fmask=0133,dmask=0022"}


@pytest.mark.parametrize("fmt", ["cms", "fat"])
def test_a_stranger_reads_but_cannot_change_roots_files(fmt: str, tmp_path: Path, public_dir: Path) -> None:
    img = _image(tmp_path, fmt)
    before = img.read_bytes()
    m = start_cli_mount(img, public_dir / "mnt", tmp_path / "mount.log", "-o", MASKS[fmt])
    try:
        st = os.stat(m.path("ROOT.FILE"))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
        assert stat.S_IMODE(os.stat(m.mountpoint).st_mode) == 0o755
        got = _as_nobody(m.mountpoint, "ROOT.FILE")
        assert got["stat"] == 0 and got["read"] == 0, got
        assert got["create"] == errno.EEXIST, got
        assert {k: got[k] for k in REFUSED} == REFUSED
        assert m.path("ROOT.FILE").read_bytes() == b"root's data\n"
        assert sorted(os.listdir(m.mountpoint)) == ["ROOT.FILE"]
        m.unmount()
    finally:
        m.cleanup()
    assert img.read_bytes() == before  # nothing the stranger tried reached the disk


@pytest.mark.parametrize("fmt", ["cms", "fat"])
def test_no_default_permissions_turns_the_checks_off(fmt: str, tmp_path: Path, public_dir: Path) -> None:
    img = _image(tmp_path, fmt)
    m = start_cli_mount(img, public_dir / "mnt", tmp_path / "mount.log", "-o",
                        MASKS[fmt] + ",no_default_permissions")
    try:
        got = _as_nobody(m.mountpoint, "ROOT.FILE")
        # Nothing checks: the stranger truncates and renames root's file (what the issue saw).
        assert got["truncate"] == 0 and got["rename"] == 0, got
        m.unmount()
    finally:
        m.cleanup()


@pytest.mark.parametrize("fmt", ["cms", "fat"])
def test_uid_gid_and_masks_are_what_stat_reports(fmt: str, tmp_path: Path, public_dir: Path) -> None:
    img = _image(tmp_path, fmt)
    cases = [  # (options, file mode, root directory mode): vfat's meaning of each mask
        ("uid=1234,gid=4321,umask=027", 0o640 if fmt == "cms" else 0o750, 0o750),
        ("uid=1234,gid=4321,fmask=0113,dmask=0002", 0o664, 0o775),
        ("uid=1234,gid=4321,fmask=0111,umask=077", 0o600 if fmt == "cms" else 0o700, 0o700),  # last one wins
    ]
    for opts, file_mode, dir_mode in cases:
        m = start_cli_mount(img, public_dir / "mnt", tmp_path / "mount.log", "-o", opts)
        try:
            for p, want in ((m.path("ROOT.FILE"), stat.S_IFREG | file_mode), (m.mountpoint, stat.S_IFDIR | dir_mode)):
                st = os.stat(p)
                assert (st.st_uid, st.st_gid, st.st_mode) == (1234, 4321, want), (opts, p, oct(st.st_mode))
            entries = {e.name: e.stat() for e in os.scandir(m.mountpoint)}  # readdirplus path
            assert entries["ROOT.FILE"].st_mode == stat.S_IFREG | file_mode, opts
            m.unmount()
        finally:
            m.cleanup()


def test_a_non_root_user_mounts_through_fusermount3(tmp_path: Path, public_dir: Path) -> None:
    """As uid 65534: mount an image it owns (in the background), write through it, unmount."""
    home = public_dir / "home"
    home.mkdir()
    img = _image(tmp_path, "cms")
    shutil.copy(img, home / "disk.cms")
    (home / "mnt").mkdir()
    for p in (home, home / "disk.cms", home / "mnt"):
        os.chown(p, NOBODY, NOBODY)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*AS_NOBODY, sys.executable, "-m", "fsproto", *args], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT, env=env)

    mnt = home / "mnt"
    try:
        if "user_allow_other" not in Path("/etc/fuse.conf").read_text().split():
            r = run("mount", "-o", "allow_other", "--log", str(home / "mount.log"), str(home / "disk.cms"), str(mnt))
            assert r.returncode == 8 and "user_allow_other in /etc/fuse.conf" in r.stderr.splitlines()[-1], r.stderr
            assert not is_mounted(mnt)
        r = run("mount", "--log", str(home / "mount.log"), str(home / "disk.cms"), str(mnt))
        assert r.returncode == 0, r.stderr
        assert is_mounted(mnt)
        line = next(x for x in Path("/proc/self/mountinfo").read_text().splitlines() if f" {mnt} " in x)
        assert f"user_id={NOBODY}" in line, line  # a user mount: fusermount3 set it up for nobody
        writer = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('hi\\n')",
                                 str(mnt / "HELLO.TXT")], capture_output=True, text=True, timeout=30)
        assert writer.returncode == 0, writer.stderr
        r = run("umount", str(mnt))
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mnt)
    finally:
        force_unmount(mnt)
    with open_fs(str(home / "disk.cms")) as s:  # what nobody wrote is on the disk
        assert s.fs.read("/HELLO.TXT", 0, 100) == b"hi\n"
