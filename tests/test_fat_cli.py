"""The generic CLI verbs on FAT images: mkfs --fat 12|16|32, auto-detection, put/ls/cat/mv/rm,
fsck exit bitmask, dump, and one-line errors for bad options."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import fat_images
from fsproto import formats
from fsproto.cli import cli
from fsproto.rawdev import ImageFile


@pytest.mark.parametrize("fat,size", [(12, "4M"), (16, "24M"), (32, "40M")])
def test_mkfs_put_ls_cat_mv_rm_fsck(tmp_path: Path, fat: int, size: str, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    img = tmp_path / "disk.img"
    assert cli(["mkfs", "--format", "fat", "--fat", str(fat), "--size", size, "--label", "cli test", str(img)]) == 0
    with ImageFile(img) as dev:
        assert formats.detect(dev).name == "fat"
    src = tmp_path / "Some Long Name.bin"
    src.write_bytes(bytes(range(256)) * 100)
    assert cli(["put", str(img), str(src)]) == 0
    capfdbinary.readouterr()
    assert cli(["ls", str(img)]) == 0
    assert capfdbinary.readouterr().out == b"Some Long Name.bin\n"
    assert cli(["cat", str(img), "Some Long Name.bin"]) == 0
    assert capfdbinary.readouterr().out == src.read_bytes()
    assert cli(["mv", str(img), "/Some Long Name.bin", "/renamed.bin"]) == 0
    assert cli(["get", str(img), "renamed.bin", "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "renamed.bin").read_bytes() == src.read_bytes()
    assert cli(["fsck", str(img)]) == 0
    assert cli(["dump", str(img), "/renamed.bin"]) == 0
    out = capfdbinary.readouterr().out.decode()
    assert f"FAT{fat}" in out and "clusters" in out and "clean" in out
    assert cli(["rm", str(img), "renamed.bin"]) == 0
    capfdbinary.readouterr()
    assert cli(["ls", str(img)]) == 0
    assert capfdbinary.readouterr().out == b""
    assert fat_images.fsck_vfat_complaints(img) == []
    label = subprocess.run(["fatlabel", str(img)], capture_output=True, text=True).stdout.strip()
    assert label == "CLI TEST"  # dosfstools reads the label mkfs wrote


def test_bad_mkfs_options_are_one_line_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "small.img"
    assert cli(["mkfs", "--format", "fat", "--fat", "32", "--size", "8M", str(img)]) == 16
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FAT32" in err
    assert cli(["mkfs", "--format", "fat", "--fat", "13", "--size", "8M", str(img)]) == 16
    assert cli(["mkfs", "--format", "fat", "--block-size", "3000", "--size", "8M", str(img)]) == 16
    assert cli(["mkfs", "--format", "fat", "--label", "far too long a label", "--size", "8M", str(img)]) == 16
    assert cli(["mkfs", "--help"]) == 0 and "--fat" in capsys.readouterr().out


def test_mkfs_vfat_images_are_detected_as_fat_only(tmp_path: Path) -> None:
    for fat in (12, 16, 32):
        img = tmp_path / f"v{fat}.img"
        with open(img, "wb") as f:
            f.truncate(fat_images.SIZES[fat])
        subprocess.run(["mkfs.vfat", "-F", str(fat), str(img)], check=True, capture_output=True)
        with ImageFile(img) as dev:
            assert [n for n, f in formats.available().items() if f.probe(dev)] == ["fat"]


def test_fsck_exit_bitmask_on_a_damaged_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev, cluster = fat_images.cross_link()
    img = tmp_path / "x.img"
    img.write_bytes(dev.snapshot())
    assert cli(["fsck", str(img)]) == 4
    assert f"cluster {cluster}" in capsys.readouterr().out
    assert cli(["fsck", "--repair", str(img)]) == 1
    assert cli(["fsck", str(img)]) == 0


def test_corrupt_boot_sector_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fat_images.base_image(16)
    raw = bytearray(dev.snapshot())
    raw[13] = 3  # BPB_SecPerClus not a power of two
    img = tmp_path / "bad.img"
    img.write_bytes(raw)
    assert cli(["ls", "--format", "fat", str(img)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BPB_SecPerClus" in err and "offset 13" in err
