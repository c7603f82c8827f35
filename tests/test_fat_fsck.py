"""FAT fsck cases, e2fsprogs style: each case is a directory tests/fat_fsck/<case>/ with ``name``
(what is broken), ``expect.1`` (output of the repairing run) and ``expect.2`` (the clean rerun).
The images come from the generators in tests/fat_images.py. After the repair, dosfstools'
``fsck.vfat -n`` must find nothing either, and the files the damage did not touch keep their bytes.

Set FSPROTO_FSCK_REGEN=1 to rewrite the expect files (then review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fat_images
from fsproto.cli import cli
from fsproto.errors import EXIT_FIXED, EXIT_OK
from fsproto.formats.fat import FORMAT
from fsproto.rawdev import ImageFile

CASES = Path(__file__).parent / "fat_fsck"
REGEN = os.environ.get("FSPROTO_FSCK_REGEN") == "1"

# Files each corruption leaves alone (their bytes must survive the repair).
UNTOUCHED = {"/b.txt": b"B" * 3000, "/dir/c.txt": b"C" * 100}


def _filter(text: str, img: Path) -> str:
    return text.replace(str(img), "IMAGE")


def _check(case: str, n: int, text: str) -> None:
    path = CASES / case / f"expect.{n}"
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{case} run {n}:\n{text}"


@pytest.mark.parametrize("case", sorted(fat_images.CORRUPTIONS))
def test_fsck_case(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev, _ = fat_images.CORRUPTIONS[case]()
    img = tmp_path / "case.img"
    img.write_bytes(dev.snapshot())
    if REGEN:
        (CASES / case).mkdir(parents=True, exist_ok=True)
        (CASES / case / "name").write_text((fat_images.CORRUPTIONS[case].__doc__ or case).strip() + "\n")
    capsys.readouterr()

    assert fat_images.fsck_vfat_complaints(img), "dosfstools must see the damage too"
    assert cli(["fsck", str(img)]) & 4  # the read-only check finds it and changes nothing
    assert img.read_bytes() == dev.snapshot()
    capsys.readouterr()

    status = cli(["fsck", "--repair", str(img)])
    _check(case, 1, _filter(capsys.readouterr().out, img))
    assert status == EXIT_FIXED

    status = cli(["fsck", str(img)])
    _check(case, 2, _filter(capsys.readouterr().out, img))
    assert status == EXIT_OK

    assert fat_images.fsck_vfat_complaints(img) == []

    with ImageFile(img) as d, FORMAT.open(d) as fs:
        for path, data in UNTOUCHED.items():
            got = fs.read(path, 0, 1 << 20)
            if path == "/b.txt" and case in ("cross-link", "size-longer-than-chain"):
                # b.txt is the damaged file: truncated at the shared cluster / its size cut to the chain
                assert got[:2048] == data[:2048], path
                continue
            assert got == data, path
