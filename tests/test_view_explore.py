"""fsproto explore, driven by Textual's headless pilot with keys only.

A cmsfs-fuse image (copied from ../shared/images/cms, never touched in place): find a file, walk
to its second-level pointer block, check the highlighted fields against the bytes decoded
independently, step through fields, follow a pointer. The same walk on a damaged copy (a pointer
outside the disk, an FST that cannot be right, a block that fails to read) marks those parts and
goes on. A FAT image written by mkfs.fat/mcopy and a plugin format get the same treatment.
Each test saves an SVG screenshot next to its temp files (the path is printed).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import struct
from pathlib import Path

import pytest

from fsproto.formats.cms import FORMAT as CMS
from fsproto.formats.fat import FORMAT as FAT
from fsproto.formats.fat.volume import Volume as FatVolume
from fsproto.formats.tutorial import FORMAT as TINY
from fsproto.rawdev import FaultInjectingDevice, ImageFile, MemoryDevice
from fsproto.view.explore import ExplorerApp
from test_view_map import IMAGES, _mtools_image, _unpack

needs_images = pytest.mark.skipif(not IMAGES.is_dir(), reason="../shared/images/cms is absent")
SIZE = (150, 48)


def _save(app: ExplorerApp, path: Path) -> str:
    svg = app.export_screenshot()
    path.write_text(svg)
    print(f"explorer screenshot: {path}")
    return svg


def _run(dev, script, shot: Path) -> None:
    """Run the app on *dev* and await ``script(app, pilot)`` inside it."""
    fmt = {"cms": CMS, "fat": FAT, "tiny": TINY}[shot.stem.split("-")[0]]
    bmap = fmt.block_map(dev)
    app = ExplorerApp(bmap, fmt.outline(dev, bmap))

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await script(app, pilot)
            await pilot.pause()
            _save(app, shot)

    asyncio.run(main())


async def _to_level2(app: ExplorerApp, pilot) -> None:
    """Keys: find TREEV.DATA (3 levels), open it, open its top block, move to the first level-2 block."""
    await pilot.press("slash", *"TREEV.DATA", "enter")
    await pilot.pause()
    assert app.current.label.startswith("TREEV.DATA")
    assert app.highlighted_fields["fname"] == "TREEV".ljust(8).encode("cp1047")
    await pilot.press("space", "down")
    await pilot.pause()
    assert app.current.label.startswith("level 3 pointer block")
    await pilot.press("space", "down")
    await pilot.pause()


def _treev(path: Path) -> tuple[list[int], list[int], bytes]:
    """Independent decode: TREEV.DATA's level-2 and level-1 pointer blocks, and the first level-2 block's bytes."""
    with ImageFile(path) as dev:
        fs = CMS.open(dev)
        tree = fs.filemap(fs._key("/TREEV.DATA")).tree
    raw = path.read_bytes()
    b = tree.pointer_levels[1][0]
    return list(tree.pointer_levels[1]), list(tree.pointer_levels[0]), raw[(b - 1) * 512 : b * 512]


@pytest.fixture
def cms_copy(tmp_path) -> Path:
    if not IMAGES.is_dir():
        pytest.skip("../shared/images/cms is absent")
    return _unpack("edf512-mixed", tmp_path)[1]


@needs_images
def test_walk_to_second_level_pointer_block(cms_copy, tmp_path) -> None:
    level2, level1, raw = _treev(cms_copy)
    before = hashlib.sha256(cms_copy.read_bytes()).hexdigest()
    nxt, hi, disp = struct.unpack_from(">III", raw, 0)
    last_entry = struct.unpack_from(">I", raw, 508)[0]

    async def script(app: ExplorerApp, pilot) -> None:
        assert "READ-ONLY" in app.sub_title
        await _to_level2(app, pilot)
        assert app.current.label == f"level 2 pointer block {level2[0]}" and app.current.start == level2[0]
        f = app.current_field
        assert (f.path, f.offset, f.size, f.value) == ("entries[0].next", 0, 4, nxt)
        assert nxt == level1[0]
        fields = app.highlighted_fields
        assert (fields["entries[0].hi_record"], fields["entries[0].disp"]) == (hi, disp)
        assert fields["last_entry_offset"] == last_entry
        assert len(fields) == 42 * 3 + 2  # 42 V entries, the fill, the trailer
        await pilot.press("right_square_bracket")
        assert (app.current_field.path, app.current_field.offset, app.current_field.value) == \
            ("entries[0].hi_record", 4, hi)
        await pilot.press("left_square_bracket", "f")  # follow entries[0].next
        await pilot.pause()
        assert app.current.start == level1[0]
        assert "pointer level 1 of TREEV.DATA" in app.current.label
        assert app.current_field.path == "entries[0].next"
        await pilot.press("g", *str(level2[0]), "enter")  # back by number: the tree node is loaded
        await pilot.pause()
        assert app.current.label == f"level 2 pointer block {level2[0]}"

    shot = tmp_path / "cms-walk.svg"
    _run(ImageFile(cms_copy), script, shot)
    svg = shot.read_text()
    assert "READ-ONLY" in svg and "entries[0].next" in svg
    assert hashlib.sha256(cms_copy.read_bytes()).hexdigest() == before


@needs_images
def test_walk_on_damaged_image(cms_copy, tmp_path) -> None:
    level2, level1, raw = _treev(cms_copy)
    img = bytearray(cms_copy.read_bytes())
    with ImageFile(cms_copy) as dev:
        fs = CMS.open(dev)
        top = fs.filemap(fs._key("/TREEV.DATA")).tree.pointer_levels[2][0]
        first_leaf = fs.filemap(fs._key("/TREEV.DATA")).tree.leaves[0]
        readme = fs.dir.lookup(fs._key("/README.TEXT"))
        readme_off = (fs.dir.block_of(readme) - 1) * 512 + (readme * 64) % 512
    struct.pack_into(">I", img, (top - 1) * 512 + 12, 999_999)  # top block's entry 1: off the disk
    img[readme_off + 52] = 9  # README.TEXT: 9 pointer levels
    cms_copy.write_bytes(bytes(img))
    nxt = struct.unpack_from(">I", raw, 0)[0]

    async def script(app: ExplorerApp, pilot) -> None:
        await _to_level2(app, pilot)
        assert app.current.start == level2[0] and app.current_field.value == nxt
        assert app.highlighted_fields["entries[0].next"] == level1[0]
        await pilot.press("down")  # the second entry of the top block: marked, not fatal
        await pilot.pause()
        assert app.current.error and "999999" in app.current.label
        await pilot.press("up", "space", "down")  # into the level-2 block: its level-1 blocks read
        await pilot.pause()
        assert app.current.start == level1[0]
        await pilot.press("space", "down")  # the first data block fails to read
        await pilot.pause()
        assert app.current.start == first_leaf and "unreadable" in app.problem
        await pilot.press("slash", *"README.TEXT", "enter", "space", "down")
        await pilot.pause()
        assert app.current.error and "9 level(s)" in app.current.label

    dev = FaultInjectingDevice(ImageFile(cms_copy), read_errors=[first_leaf - 1])
    _run(dev, script, tmp_path / "cms-damaged.svg")
    bmap = CMS.block_map(FaultInjectingDevice(ImageFile(cms_copy), read_errors=[first_leaf - 1]))
    assert bmap.role_of(first_leaf) == "unreadable"
    assert any(p.code == "file-unreadable" and "TREEV.DATA" in p.message for p in bmap.problems)


@pytest.mark.skipif(shutil.which("mshowfat") is None, reason="mtools is absent")
def test_fat_entry_and_follow(tmp_path) -> None:
    path = tmp_path / "ref.img"
    chains = _mtools_image(path)
    with ImageFile(path) as dev:
        g = FatVolume(dev).geo

    async def script(app: ExplorerApp, pilot) -> None:
        await pilot.press("down")
        await pilot.pause()
        assert app.current.label == "boot sector (sector 0)"
        assert app.highlighted_fields["bpb.BPB_BytsPerSec"] == 512
        assert app.highlighted_fields["BS_VolLab"] == b"REF        "
        await pilot.press("slash", *"b.bin", "enter")
        await pilot.pause()
        assert app.highlighted_fields["DIR_FileSize"] == 70000
        assert app.highlighted_fields["DIR_FstClusLO"] == chains["/sub/b.bin"][0]
        while app.current_field.path != "DIR_FstClusLO":
            await pilot.press("right_square_bracket")
        await pilot.press("f")
        await pilot.pause()
        assert app.current.start == g.data_sector + (chains["/sub/b.bin"][0] - 2) * g.sectors_per_cluster
        assert "of /sub/b.bin" in app.current.label

    _run(ImageFile(path), script, tmp_path / "fat-follow.svg")


def test_plugin_format_generic_explorer(tmp_path) -> None:
    dev = MemoryDevice(64, block_size=512)
    TINY.mkfs(dev, entries=16, label="TUTOR")
    with TINY.open(dev) as fs:
        fs.create("/one")
        fs.write("/one", 0, b"x" * 600)

    async def script(app: ExplorerApp, pilot) -> None:
        await pilot.press("down")  # role: label
        await pilot.pause()
        await pilot.press("space", "down")
        await pilot.pause()
        assert app.current.start == 0
        assert app.highlighted_fields["magic"] == b"TINYFS01" and app.highlighted_fields["label"] == "TUTOR"
        await pilot.press("slash", *"file data", "enter", "space", "down")
        await pilot.pause()
        assert "of one" in app.current.label

    _run(dev, script, tmp_path / "tiny-generic.svg")
