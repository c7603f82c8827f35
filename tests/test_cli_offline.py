"""The offline verbs through the CLI, on real images of two formats (CMS and FAT)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fsproto.cli import cli
from fsproto.cli import fs_actions
from fsproto.errors import UsageError
from fsproto.vfs import FileStat, Filesystem, FsStats


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def cms_image(tmp_path: Path) -> Path:
    img = tmp_path / "disk.cms"
    assert cli(["mkfs", "--format", "cms", "--block-size", "1024", "--label", "TEST01", "--size", "4M", str(img)]) == 0
    return img


def test_put_ls_get_roundtrip_cms(cms_image: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "DATA.BIN").write_bytes(os.urandom(70_000))
    (src / "NOTES.TEXT").write_text("hello\nworld\n")
    assert cli(["put", str(cms_image), str(src / "DATA.BIN")]) == 0
    assert cli(["put", "--text", "--recfm", "F", "--lrecl", "80", str(cms_image), str(src / "NOTES.TEXT")]) == 0
    capsys.readouterr()

    assert cli(["ls", str(cms_image)]) == 0
    assert capsys.readouterr().out.split() == ["DATA.BIN", "NOTES.TEXT"]
    assert cli(["ls", "-l", str(cms_image)]) == 0
    long = capsys.readouterr().out
    assert "recfm" in long and "NOTES.TEXT" in long and "80" in long

    out = tmp_path / "out"
    assert cli(["get", "-o", str(out), str(cms_image)]) == 0
    assert _sha(out / "DATA.BIN") == _sha(src / "DATA.BIN")
    # Binary view of an F 80 text file: two records of 80 EBCDIC bytes, blank padded.
    assert (out / "NOTES.TEXT").read_bytes() == "hello".ljust(80).encode("cp037") + "world".ljust(80).encode("cp037")
    assert cli(["cat", "--text", str(cms_image), "NOTES.TEXT"]) == 0
    assert capsys.readouterr().out == "hello".ljust(80) + "\n" + "world".ljust(80) + "\n"
    assert not list(out.glob("*.part"))


def test_rm_mv_and_fsck_exit_status(cms_image: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "A.B"
    f.write_bytes(b"x" * 10)
    assert cli(["put", str(cms_image), str(f)]) == 0
    assert cli(["mv", str(cms_image), "A.B", "C.D"]) == 0
    capsys.readouterr()
    assert cli(["ls", str(cms_image)]) == 0
    assert capsys.readouterr().out.split() == ["C.D"]
    assert cli(["rm", str(cms_image), "C.D"]) == 0
    assert cli(["fsck", str(cms_image)]) == 0
    assert "clean" in capsys.readouterr().out
    # Not there any more: one line, non-zero, nothing written.
    before = _sha(cms_image)
    assert cli(["rm", str(cms_image), "C.D"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _sha(cms_image) == before


def test_put_refuses_existing_without_replace(cms_image: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "X.Y"
    f.write_bytes(b"1")
    assert cli(["put", str(cms_image), str(f)]) == 0
    assert cli(["put", str(cms_image), str(f)]) != 0
    assert "--replace" in capsys.readouterr().err
    f.write_bytes(b"22")
    assert cli(["put", "--replace", str(cms_image), str(f)]) == 0
    capsys.readouterr()
    assert cli(["cat", str(cms_image), "X.Y"]) == 0
    assert capsys.readouterr().out == "22"


def test_bad_names_and_sizes_are_usage_errors(cms_image: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "not-a-cms-name.txt"
    f.write_bytes(b"1")
    assert cli(["put", str(cms_image), str(f)]) != 0
    assert "Traceback" not in capsys.readouterr().err
    assert cli(["mkfs", "--format", "cms", "--size", "12Q", str(tmp_path / "n.img")]) == 16
    assert cli(["mkfs", "--format", "nosuch", "--size", "1M", str(tmp_path / "m.img")]) != 0


def test_get_extracts_directories_recursively_fat(tmp_path: Path) -> None:
    img = tmp_path / "fat.img"
    assert cli(["mkfs", "--format", "fat", "--fat", "16", "--size", "16M", str(img)]) == 0
    with fs_actions.open_fs(str(img), writable=True) as s:
        s.fs.mkdir("/Sub")
        s.fs.mkdir("/Sub/Deeper")
        s.fs.create("/Sub/Deeper/file.txt")
        s.fs.write("/Sub/Deeper/file.txt", 0, b"deep")
        s.fs.create("/top.txt")
        s.fs.write("/top.txt", 0, b"top")
    out = tmp_path / "out"
    assert cli(["get", "-o", str(out), str(img)]) == 0
    assert (out / "Sub" / "Deeper" / "file.txt").read_bytes() == b"deep"
    assert (out / "top.txt").read_bytes() == b"top"


class _HostileFs(Filesystem):
    """A filesystem whose directory holds a name that would escape the output directory."""

    def stat(self, path: str) -> FileStat:
        return FileStat(name=path.rsplit("/", 1)[-1] or "/", is_dir=path == "/", size=1, mtime_ns=0)

    def listdir(self, path: str = "/") -> list[FileStat]:
        return [FileStat(name="..", is_dir=False, size=1, mtime_ns=0)]

    def read(self, path: str, offset: int, size: int) -> bytes:
        return b"x"

    def statfs(self) -> FsStats:
        return FsStats(512, 1, 0, 1, 0, 255)


def test_get_refuses_names_that_escape(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="refusing"):
        fs_actions.get_files(_HostileFs(), [], tmp_path / "out")
    assert not (tmp_path / "x").exists()


def test_parse_size() -> None:
    assert fs_actions.parse_size("100M") == 100 << 20
    assert fs_actions.parse_size("4096") == 4096
    assert fs_actions.parse_size("2GiB") == 2 << 30
    with pytest.raises(UsageError):
        fs_actions.parse_size("-1")


def test_offline_writers_refuse_an_image_a_mount_holds(cms_image: Path, tmp_path: Path, capsys) -> None:
    """A read-write mount caches attributes; an offline writer beside it would corrupt the disk."""
    import fcntl

    f = tmp_path / "A.B"
    f.write_bytes(b"1")
    with open(cms_image, "rb") as held:  # what the mount daemon holds for a read-write mount
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = _sha(cms_image)
        assert cli(["put", str(cms_image), str(f)]) == 8
        assert f"in use by pid {os.getpid()} (" in capsys.readouterr().err  # names the holder
        assert cli(["fsck", "--repair", str(cms_image)]) == 8
        assert _sha(cms_image) == before
        assert cli(["put", "--force", str(cms_image), str(f)]) == 0  # the user said so
    assert cli(["ls", str(cms_image)]) == 0


def test_get_reports_monotonic_progress_to_the_total(cms_image: Path, tmp_path: Path) -> None:
    sizes = {"A.BIN": 3 * fs_actions.COPY_CHUNK + 5, "B.BIN": 7}
    with fs_actions.open_fs(str(cms_image), writable=True) as s:
        for name, size in sizes.items():
            s.fs.create("/" + name)
            s.fs.write("/" + name, 0, os.urandom(size))
    seen: list[tuple[int, int]] = []
    with fs_actions.open_fs(str(cms_image)) as s:
        fs_actions.get_files(s.fs, [], tmp_path / "out", progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == sum(sizes.values())
    assert {t for _, t in seen} == {sum(sizes.values())}
