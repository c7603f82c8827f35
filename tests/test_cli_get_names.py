"""``fsproto get`` with names the image may legally hold but the host cannot take as given.

Found in review: a FAT long name of 255 characters made ``get`` open ``NAME.part`` (260 bytes,
past the host's 255-byte limit) and die with a traceback; a name of 200 two-byte characters
cannot be created on the host at all and must be a one-line error, not a traceback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fsproto.cli import cli
from fsproto.formats.fat import FORMAT
from fsproto.rawdev import ImageFile

LONG_ASCII = "a" * 251 + ".bin"  # 255 characters: the most a FAT long name holds
LONG_UTF8 = "é" * 200  # 200 characters, 400 bytes in UTF-8: more than a host name can be


def _image(tmp_path: Path, names: list[str]) -> Path:
    img = tmp_path / "names.img"
    assert cli(["mkfs", "--format", "fat", "--size", "1M", str(img)]) == 0
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
