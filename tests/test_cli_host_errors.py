"""The host side of ``get`` and ``cat``: names the host cannot take, outputs that refuse bytes.

Found in review: a FAT long name of 255 characters made ``get`` open ``NAME.part`` (260 bytes,
past the host's 255-byte limit) and die with a traceback; a name of 200 two-byte characters
cannot be created on the host at all, and ``cat > /dev/full`` raised a bare OSError. Each must
be one ``fsproto: error:`` line (HostFileError), never a traceback.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from fsproto.cli import cli
from fsproto.formats.fat import FORMAT
from fsproto.rawdev import ImageFile

LONG_ASCII = "a" * 251 + ".bin"  # 255 characters: the most a FAT long name holds
LONG_UTF8 = "é" * 200  # 200 characters, 400 bytes in UTF-8: more than a host name can be


def _image(tmp_path: Path, names: list[str], size: str = "1M") -> Path:
    img = tmp_path / "names.img"
    assert cli(["mkfs", "--format", "fat", "--size", size, str(img)]) == 0
    with ImageFile(img, writable=True) as dev, FORMAT.open(dev) as fs:
        for i, name in enumerate(names):
            fs.create("/" + name)
            fs.write("/" + name, 0, f"file {i}\n".encode() * 100)
    return img


def test_get_extracts_a_255_character_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path, [LONG_ASCII])
    out = tmp_path / "out"
    assert cli(["get", "-o", str(out), str(img)]) == 0
    assert [p.name for p in out.iterdir()] == [LONG_ASCII]
    assert (out / LONG_ASCII).read_bytes() == b"file 0\n" * 100


def test_a_name_the_host_cannot_hold_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path, [LONG_UTF8])
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli(["get", "-o", str(out), str(img)]) == 8
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fsproto: error: ") and "too long" in err, err
    assert LONG_UTF8[:20] in err  # names the entry
    assert list(out.iterdir()) == []  # no temporary file left behind
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before


def test_cat_into_a_full_device_is_one_line(tmp_path: Path) -> None:
    img = _image(tmp_path, ["small.txt", "big.bin"], "8M")
    with ImageFile(img, writable=True) as dev, FORMAT.open(dev) as fs:
        fs.write("/big.bin", 0, bytes(3 << 20))  # more than one copy chunk
    for name in ("small.txt", "big.bin"):
        with open("/dev/full", "wb") as full:
            r = subprocess.run([sys.executable, "-m", "fsproto", "cat", str(img), name], stdout=full,
                               stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 8, r.stderr
        assert r.stderr == "fsproto: error: standard output: cannot write: No space left on device\n", r.stderr


def test_cat_into_a_closed_pipe_stays_quiet(tmp_path: Path) -> None:
    img = _image(tmp_path, ["big.bin"], "8M")
    with ImageFile(img, writable=True) as dev, FORMAT.open(dev) as fs:
        fs.write("/big.bin", 0, bytes(3 << 20))
    r = subprocess.run(f"{sys.executable} -m fsproto cat {img} big.bin | head -c 10 >/dev/null; "
                       "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                       text=True, timeout=60)
    # click ends a closed pipe itself (sys.exit(1), stdout pacified), before the frame's
    # BrokenPipeError branch sees it: quiet, status 1.
    assert r.stdout.strip() == "1" and r.stderr == "", r.stderr


@pytest.mark.parametrize("path", ["/", "/dir"])
def test_cat_of_a_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str) -> None:
    """FAT directories have size 0: cat used to print nothing and exit 0."""
    img = _image(tmp_path, [])
    with ImageFile(img, writable=True) as dev, FORMAT.open(dev) as fs:
        fs.mkdir("/dir")
    capsys.readouterr()
    assert cli(["cat", str(img), path]) == 8
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err, err


def test_get_of_the_root_extracts_everything(tmp_path: Path) -> None:
    """``get IMAGE /`` used to refuse "an entry named '/'"; it now means what ``get IMAGE`` does."""
    img = _image(tmp_path, ["one.txt", "two.txt"])
    assert cli(["get", "-o", str(tmp_path / "all"), str(img)]) == 0
    assert cli(["get", "-o", str(tmp_path / "root"), str(img), "/"]) == 0
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["one.txt", "two.txt"]
    for name in ("one.txt", "two.txt"):
        assert (tmp_path / "root" / name).read_bytes() == (tmp_path / "all" / name).read_bytes()


def test_cli_returns_an_int_when_stdout_closes(tmp_path: Path) -> None:
    """click turns a closed stdout pipe into sys.exit(1) even outside standalone mode: cli()
    must still return the status to an in-process caller, not raise SystemExit."""
    img = _image(tmp_path, ["big.bin"], "8M")
    with ImageFile(img, writable=True) as dev, FORMAT.open(dev) as fs:
        fs.write("/big.bin", 0, bytes(3 << 20))
    code = (f"import sys; from fsproto.cli import cli; rc = cli(['cat', {str(img)!r}, 'big.bin']); "
            "print('returned', rc, file=sys.stderr)")
    r = subprocess.run(f"{sys.executable} -c \"{code}\" | head -c 10 >/dev/null", shell=True,
                       executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert r.stderr == "returned 1\n", r.stderr
