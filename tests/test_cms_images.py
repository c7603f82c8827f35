"""Every CMS image under ../shared/images/cms/ reads exactly as its manifest says."""

from __future__ import annotations

import hashlib
import json
import lzma
import time
from pathlib import Path

import pytest

from conftest import SHARED
from fsproto.formats.cms import FORMAT
from fsproto.formats.cms.records import iter_records
from fsproto.rawdev import ImageFile

IMAGES = SHARED / "images" / "cms"
MANIFESTS = sorted(IMAGES.glob("*.json")) if IMAGES.is_dir() else []

pytestmark = pytest.mark.skipif(not IMAGES.is_dir(), reason="../shared/images/cms is absent")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module", params=[m.name for m in MANIFESTS])
def image(request, tmp_path_factory) -> tuple[dict, Path]:
    manifest = json.loads((IMAGES / request.param).read_text())
    out = tmp_path_factory.mktemp("cmsimg") / manifest["image"].removesuffix(".xz")
    out.write_bytes(lzma.decompress((IMAGES / manifest["image"]).read_bytes()))
    assert _sha(out.read_bytes()) == manifest["image_sha256"]
    return manifest, out


def test_label_and_directory(image) -> None:
    m, path = image
    with ImageFile(path) as dev:
        assert FORMAT.probe(dev)
        fs = FORMAT.open(dev)
        lab = fs.vol.label
        assert lab.block_size == m["block_size"]
        assert lab.num_blocks == m["total_blocks"]
        assert lab.offset == m["label_offset"]
        assert lab.dop == m["dop"]
        assert lab.fields["ADTUSED"] == m["used_blocks"]
        assert fs.statfs().label == m["label"]
        d = fs.dir.director
        assert (d.fop, d.data_blocks, d.levels, d.records) == (
            m["directory"]["fop"], m["directory"]["data_blocks"], m["directory"]["levels"], m["directory"]["records"])
        # The allocation map has exactly ADTUSED bits set (the reference keeps it exact).
        assert fs.amap.used == m["used_blocks"]


def test_listing_matches_manifest(image) -> None:
    m, path = image
    with ImageFile(path) as dev:
        fs = FORMAT.open(dev)
        listed = sorted(st.name for st in fs.listdir("/"))
        assert listed == sorted(f"{f['name']}.{f['type']}" for f in m["files"])


def test_every_file_reads_as_manifest(image) -> None:
    m, path = image
    with ImageFile(path) as dev:
        fs = FORMAT.open(dev)
        tfs = FORMAT.open(dev, text=True)
        for f in m["files"]:
            p = f"/{f['name']}.{f['type']}"
            st = fs.stat(p.lower())  # lookups are case-insensitive
            assert st.size == f["size_binary"], p
            assert st.extra["recfm"] == f["recfm"]
            assert int(st.extra["lrecl"]) == f["lrecl"]
            assert int(st.extra["records"]) == f["records"]
            assert st.extra["mode"] == f["mode"]
            assert fs.getxattr(p, "user.file_mode") == f["mode"].encode()
            assert fs.getxattr(p, "user.record_format") == f["recfm"].encode()
            assert fs.getxattr(p, "user.record_lrecl") == str(f["lrecl"]).encode()
            assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.mtime_ns / 1e9)) == f["date"], p
            data = fs.read(p, 0, st.size + 100)
            assert _sha(data) == f["sha256_binary"], p
            # Reads at odd offsets and sizes equal slices of the whole.
            for off, size in ((1, 7), (st.size // 3, 4097), (max(0, st.size - 5), 100)):
                assert fs.read(p, off, size) == data[off : off + size], (p, off, size)
            key = fs._key(p)
            recs = b"".join(len(r).to_bytes(2, "big") + r for r in iter_records(fs.vol, fs.filemap(key)))
            assert _sha(recs) == f["sha256_records"], p
            if f["text"]:
                text = tfs.read(p, 0, 1 << 30)
                assert _sha(text) == f["sha256_text"], p
                assert tfs.stat(p).size == len(text)
            fst = fs.dir.slots[fs.dir.index[key]]
            e = f["fst"]
            assert fs.dir.index[key] == e["slot"]
            assert (fst.fop, fst.data_blocks, fst.records, fst.levels, fst.ptr_size, fst.flag) == (
                e["fop"], e["data_blocks"], e["records"], e["levels"], e["ptr_size"], e["flag"]), p
            assert fst.date.hex() == e["date_bcd"]


def test_images_fsck_clean(image) -> None:
    m, path = image
    with ImageFile(path) as dev:
        report = FORMAT.fsck(dev)
        assert report.clean, [str(p) for p in report.problems]
        # The reference leaves the DIRECTOR data-block count stale once the directory grows.
        stale = [p for p in report.problems if p.code == "director-blocks-stale"]
        nblocks = -(-m["directory"]["records"] * 64 // m["block_size"])
        assert bool(stale) == (m["directory"]["data_blocks"] != nblocks)
        assert all(p.severity == "notice" for p in report.problems)


def test_fsproto_writes_on_reference_images(image, tmp_path) -> None:
    """fsproto's writer on a disk the reference wrote: every other file is untouched, fsck clean,
    and the DIRECTOR data-block count becomes exact."""
    m, path = image
    work = tmp_path / "w.img"
    work.write_bytes(path.read_bytes())
    with ImageFile(work, writable=True) as dev:
        fs = FORMAT.open(dev)
        names = sorted("/" + s.name for s in fs.listdir())
        before = {n: fs.read(n, 0, 1 << 30) for n in names}
        victim, renamed = names[0], names[1]
        fs.unlink(victim)
        fs.rename(renamed, "/MOVED.FILE")
        fs.create("/FSPROTO.NEW")
        fs.write("/FSPROTO.NEW", 0, b"new data " * 5000)
        big = max(names[2:], key=lambda n: len(before[n]))
        fs.write(big, len(before[big]), b"appended")
        fs.close()
        fs = FORMAT.open(dev)
        assert fs.read("/MOVED.FILE", 0, 1 << 30) == before[renamed]
        want = before[big] + b"appended"
        st = fs.stat(big)
        if st.extra["recfm"] == "F":  # F files grow by whole records, zero-padded
            want += bytes(-len(want) % int(st.extra["lrecl"]))
        assert fs.read(big, 0, 1 << 30) == want
        for n in names[2:]:
            if n != big:
                assert fs.read(n, 0, 1 << 30) == before[n], n
        assert fs.dir.director.data_blocks == len(fs.dir.tree.leaves)
        report = FORMAT.fsck(dev)
        assert report.problems == [], [str(p) for p in report.problems]


def test_reference_ascii_view_equals_fsproto_cp1047(image) -> None:
    """What cmsfs-fuse -a returned (manifest ``cmsfs_ascii_read``, ISO-8859-1) equals fsproto's
    cp1047 decoding of the same records for every file, including records holding 0x15/0x25
    (the reference maps 0x15 -> NEL and 0x25 -> LF, as cp037; see codepage.py)."""
    m, path = image
    with ImageFile(path) as dev:
        fs = FORMAT.open(dev)
        for f in m["files"]:
            recs = list(iter_records(fs.vol, fs.filemap(fs._key(f"/{f['name']}.{f['type']}"))))
            view = b"".join(r.decode("cp1047").encode("latin-1") + b"\n" for r in recs)
            assert _sha(view) == f["cmsfs_ascii_read"]["sha256"], f["name"]
            assert len(view) == f["cmsfs_ascii_read"]["size"]
