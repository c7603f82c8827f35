"""fsproto map: every block's role equals the walk, the reference agrees, the PNG shows it.

CMS: a cmsfs-fuse image from ../shared/images/cms (its manifest says how many data blocks each
file has and how many blocks are in use) and fsck's damaged cases (cross-link, leak). FAT: an
image written by mkfs.fat and mcopy, whose chains mtools' mshowfat reports, and fsproto's own
corrupted cases. The expected role of each block is computed through the read path (the
Filesystem's trees and map), not through the block-map code.
"""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from conftest import SHARED
from fsproto.cli import cli
from fsproto.errors import MediaError
from fsproto.formats.cms import FORMAT as CMS
from fsproto.formats.fat import FORMAT as FAT
from fsproto.formats.fat.fsck import walk as fat_walk
from fsproto.formats.fat.volume import Volume as FatVolume
from fsproto.formats.tutorial import FORMAT as TINY
from fsproto.rawdev import FaultInjectingDevice, ImageFile, MemoryDevice
from fsproto.view.cells import rgb
from fsproto.view.png import write_png

IMAGES = SHARED / "images" / "cms"
needs_images = pytest.mark.skipif(not IMAGES.is_dir(), reason="../shared/images/cms is absent")


def _unpack(name: str, dest: Path) -> tuple[dict, Path]:
    manifest = json.loads((IMAGES / f"{name}.json").read_text())
    out = dest / f"{name}.img"
    out.write_bytes(lzma.decompress((IMAGES / manifest["image"]).read_bytes()))
    return manifest, out


@pytest.fixture(scope="module")
def cms512(tmp_path_factory) -> tuple[dict, Path]:
    if not IMAGES.is_dir():
        pytest.skip("../shared/images/cms is absent")
    return _unpack("edf512-mixed", tmp_path_factory.mktemp("map"))


def _expected_cms(dev) -> dict[int, tuple[str, str, int]]:
    """(role, owner, level) of every block from the filesystem's read path."""
    fs = CMS.open(dev)
    n = fs.vol.num_blocks
    want: dict[int, tuple[str, str, int]] = {1: ("reserved", "", 0), 2: ("reserved", "", 0), 3: ("label", "", 0)}

    def tree(t, owner: str, role: str) -> None:
        for b in t.leaves:
            if b:
                want[b] = (role, owner, 0)
        for lvl, blocks in enumerate(t.pointer_levels, 1):
            for b in blocks:
                if b:
                    want[b] = ("pointer", owner, lvl)

    tree(fs.dir.tree, "DIRECTOR", "directory")
    tree(fs.amap.tree, "ALLOCMAP", "allocmap")
    for _, fst in fs.dir.files():
        tree(fs.filemap(fst.key).tree, fst.display_name(), "data")
    for b in range(1, n + 1):
        want.setdefault(b, ("leaked" if fs.amap.is_used(b) else "free", "", 0))
    return want


def _roles(bmap) -> dict[int, tuple[str, str, int]]:
    return {u: (e.role, e.owner, e.level) for e in bmap.extents for u in range(e.start, e.end)}


@needs_images
def test_cms_roles_equal_the_walk_and_the_manifest(cms512) -> None:
    manifest, path = cms512
    with ImageFile(path) as dev:
        bmap = CMS.block_map(dev)
        assert _roles(bmap) == _expected_cms(dev)
        assert [str(p) for p in bmap.problems] == [str(p) for p in CMS.fsck(dev).problems]
    # The reference's side: cmsfs-fuse's FSTs (data blocks per file) and ADTUSED.
    counts = bmap.role_counts()
    assert bmap.count - counts.get("free", 0) == manifest["used_blocks"]
    for f in manifest["files"]:
        name = f"{f['name']}.{f['type']}"
        data = [u for e in bmap.extents if e.owner == name and e.role == "data" for u in range(e.start, e.end)]
        assert len(data) == f["fst"]["data_blocks"], name
        if f["fst"]["levels"]:
            assert bmap.role_of(f["fst"]["fop"]) == "pointer"
            assert bmap.extent_at(f["fst"]["fop"]).level == f["fst"]["levels"]


def _damaged_cms() -> tuple[bytes, dict]:
    import test_cms_fsck as cases  # the fsck cases' generators: one disk, then a cross-link and a leak

    img_bytes, slots = cases._base()
    img = bytearray(img_bytes)
    cases.cross_link(img, slots)
    cases.leak(img, slots)
    return bytes(img), slots


def test_cms_map_shows_fsck_findings(tmp_path) -> None:
    img, _ = _damaged_cms()
    dev = MemoryDevice.from_bytes(img, read_only=True)
    bmap = CMS.block_map(dev)
    report = CMS.fsck(dev)
    assert [str(p) for p in bmap.problems] == [str(p) for p in report.problems]
    crossed = [int(m.group(1)) for p in report.problems if p.code == "cross-link"
               for m in [re.match(r"block (\d+) is used", p.message)]]
    assert crossed and all(bmap.role_of(b) == "cross-linked" for b in crossed)
    assert "FILE00.DATA" in bmap.extent_at(crossed[0]).note and "FILE16.DATA" in bmap.extent_at(crossed[0]).note
    for b in (1500, 1501, 1502, 1700):  # the leak generator's blocks
        assert bmap.role_of(b) == "leaked"
    want = _expected_cms(dev)
    for u, (role, owner, level) in _roles(bmap).items():
        if role not in ("cross-linked", "leaked"):
            assert (role, owner, level) == want[u], u


def test_cms_unreadable_block_is_marked(tmp_path) -> None:
    img, _ = _damaged_cms()
    inner = MemoryDevice.from_bytes(img, read_only=True)
    fs = CMS.open(inner)
    victim = [b for b in fs.filemap(fs._key("/FILE05.DATA")).tree.leaves if b][1]
    dev = FaultInjectingDevice(inner, read_errors=[victim - 1])  # 512-byte blocks: LBA = block - 1
    bmap = CMS.block_map(dev)
    e = bmap.extent_at(victim)
    assert (e.role, e.owner) == ("unreadable", "FILE05.DATA")
    assert bmap.role_of(victim + 1 if bmap.extent_at(victim + 1).owner == "FILE05.DATA" else victim - 1) == "data"


@needs_images
def test_cms_bad_sector_under_a_v_file_is_marked_not_fatal(cms512) -> None:
    _, path = cms512
    with ImageFile(path) as inner:
        fs = CMS.open(inner)
        victim = fs.filemap(fs._key("/PROFILE.EXEC")).tree.leaves[1]  # V data: the walk reads it
        healthy = _roles(CMS.block_map(inner))
        with pytest.raises(MediaError):  # fsck itself stops at the bad sector (exit 8) ...
            CMS.fsck(FaultInjectingDevice(inner, read_errors=[victim - 1], owns_inner=False))
        bmap = CMS.block_map(FaultInjectingDevice(inner, read_errors=[victim - 1], owns_inner=False))
    # ... the map marks it and shows everything else as before.
    e = bmap.extent_at(victim)
    assert (e.role, e.owner) == ("unreadable", "PROFILE.EXEC")
    assert bmap.problems[0].code == "unreadable" and f"LBA {victim - 1}" in bmap.problems[0].message
    assert any(p.code == "file-unreadable" and "PROFILE.EXEC" in p.message for p in bmap.problems)
    for u, (role, owner, level) in _roles(bmap).items():
        if u == victim:
            continue
        if healthy[u][1] == "PROFILE.EXEC":  # fsck cannot read the file: its blocks are leaked, still named
            assert (role, owner) == ("leaked", "PROFILE.EXEC"), u
        else:
            assert (role, owner, level) == healthy[u], u
    with pytest.raises(MediaError):
        bmap.read_unit(victim, 1)  # a viewer reading the block sees the real device fail


def _mtools_image(path: Path) -> dict[str, list[int]]:
    """A FAT12 image made by mkfs.fat and mcopy; returns mshowfat's clusters per path."""
    subprocess.run(["mkfs.fat", "-C", "-n", "REF", str(path), "4096"], check=True, capture_output=True)
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    blob = bytes(range(256)) * 300
    subprocess.run(["mmd", "-i", str(path), "::/sub"], check=True, env=env)
    for name, size in (("a.bin", 5000), ("sub/b.bin", 70000), ("sub/c.bin", 1)):
        src = path.parent / name.replace("/", "_")
        src.write_bytes(blob[:size])
        subprocess.run(["mcopy", "-i", str(path), str(src), f"::/{name}"], check=True, env=env)
    out = subprocess.run(["mshowfat", "-i", str(path), "::/a.bin", "::/sub/b.bin", "::/sub/c.bin", "::/sub"],
                         check=True, capture_output=True, text=True, env=env).stdout
    chains: dict[str, list[int]] = {}
    for line in out.splitlines():
        name, _, runs = line.partition(" ")
        clusters = []
        for lo, hi in re.findall(r"<(\d+)(?:-(\d+))?>", runs):
            clusters.extend(range(int(lo), int(hi or lo) + 1))
        chains[name.removeprefix("::")] = clusters
    return chains


@pytest.mark.skipif(shutil.which("mshowfat") is None, reason="mtools is absent")
def test_fat_roles_equal_mshowfat_and_the_walk(tmp_path) -> None:
    path = tmp_path / "ref.img"
    chains = _mtools_image(path)
    with ImageFile(path) as dev:
        bmap = FAT.block_map(dev)
        g = FatVolume(dev).geo
        chk = fat_walk(dev)
    spc = g.sectors_per_cluster

    def sectors(c: int) -> range:
        s = g.data_sector + (c - 2) * spc
        return range(s, s + spc)

    for name, clusters in chains.items():
        role = "directory" if name == "/sub" else "data"
        got = sorted({(u - g.data_sector) // spc + 2 for e in bmap.extents if e.owner == name
                      for u in range(e.start, e.end)})
        assert got == sorted(clusters), name
        assert all(bmap.role_of(s) == role for c in clusters for s in sectors(c))
    assert bmap.role_of(0) == "label"
    assert {bmap.role_of(s) for s in range(g.reserved_sectors, g.root_dir_sector)} == {"allocmap"}
    assert {bmap.role_of(s) for s in range(g.root_dir_sector, g.data_sector)} == {"directory"}
    for c in range(2, g.max_cluster + 1):  # every cluster as fsck's walk owns it
        oid = chk.owner[c]
        want = ("directory" if oid in chk.dir_ids else "data") if oid else \
            ("free" if chk.fat.get(c) == 0 else "leaked")
        assert {bmap.role_of(s) for s in sectors(c)} == {want}, c


def test_fat_map_shows_cross_link_and_lost_clusters() -> None:
    import fat_images

    dev, at = fat_images.cross_link(16)
    bmap = FAT.block_map(dev)
    g = FatVolume(dev).geo
    sector = g.data_sector + (at - 2) * g.sectors_per_cluster
    assert bmap.role_of(sector) == "cross-linked"
    assert any(p.code == "cross-link" for p in bmap.problems)
    dev, at = fat_images.lost_clusters(16)
    bmap = FAT.block_map(dev)
    assert bmap.role_of(g.data_sector + (at - 2) * g.sectors_per_cluster) == "leaked"


def test_plugin_format_gets_a_map() -> None:
    dev = MemoryDevice(256, block_size=512)
    TINY.mkfs(dev, entries=16)
    with TINY.open(dev) as fs:
        fs.create("/one")
        fs.write("/one", 0, b"x" * 1500)
    bmap = TINY.block_map(dev)
    assert bmap.role_of(0) == "label" and bmap.role_of(1) == "directory"
    assert bmap.units_of("one") == [3, 4, 5]
    assert bmap.role_counts()["free"] == 256 - 1 - 2 - 3


@needs_images
def test_png_has_legend_and_role_colours(cms512, tmp_path) -> None:
    _, path = cms512
    out = tmp_path / "map.png"
    with ImageFile(path) as dev:
        bmap = CMS.block_map(dev)
        fs = CMS.open(dev)
        tree = fs.filemap(fs._key("/TREEV.DATA")).tree
        other = fs.filemap(fs._key("/TREEF.DATA")).tree
    lay = write_png(bmap, out, highlight="TREEV.DATA")
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (lay.width, lay.height)
    px = img.convert("RGB")
    assert lay.cells[0].count == 1  # 8192 blocks: one cell per block, so each pixel is one block's role
    checks = {3: "label", tree.pointer_levels[1][0]: "highlight", tree.leaves[5]: "highlight",
              other.pointer_levels[1][0]: "pointer:2", other.pointer_levels[0][0]: "pointer:1",
              fs.dir.tree.leaves[0]: "directory", fs.amap.tree.leaves[0]: "allocmap", 8000: "free"}
    for block, key in checks.items():
        assert px.getpixel(lay.unit_centre(block)) == rgb(key), (block, key)
    data_key = next(c.key for c in lay.cells if c.start == other.leaves[0])
    assert data_key.startswith("data:") and px.getpixel(lay.unit_centre(other.leaves[0])) == rgb(data_key)
    # The legend: one swatch per row in the image, and the same rows as PNG text.
    legend = [img.text[k] for k in sorted((k for k in img.text if k.startswith("fsproto:legend:")),
                                          key=lambda k: int(k.rsplit(":", 1)[1]))]
    assert len(legend) == len(lay.legend) >= 8
    for row, (key, words, n) in enumerate(lay.legend):
        x0, y0, x1, y1 = lay.swatch_box(row)
        assert px.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == rgb(key)
        assert legend[row].endswith(f"{words} ({n})")
    assert any("TREEV.DATA (highlighted)" in t for t in legend)
    assert any("pointer block, level 3" in t for t in legend)


@needs_images
def test_map_cli(cms512, tmp_path, capsys) -> None:
    _, path = cms512
    png = tmp_path / "cli.png"
    assert cli(["map", str(path), "--png", str(png), "--file", "treev.data"]) == 0
    out = capsys.readouterr().out
    assert "TREEV.DATA (highlighted)" in out and "pointer block, level 3" in out and "fsck findings" in out
    assert png.stat().st_size > 0
    assert cli(["map", str(path), "--file", "NOPE.DATA"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("fsproto: error:") and "NOPE.DATA" in err and len(err.strip().splitlines()) == 1
    assert cli(["map", "--help"]) == 0
    assert "block map" in capsys.readouterr().out


def test_map_cli_unknown_format(tmp_path, capsys) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(1 << 16))
    assert cli(["map", str(junk)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("fsproto: error:") and len(err.strip().splitlines()) == 1
