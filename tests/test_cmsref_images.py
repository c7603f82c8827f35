"""The reference's view of every shared CMS image equals its manifest (one guest boot).

Proves the harness sees exactly what the manifests under ../shared/images/cms/ say:
names and directory order (FST slots), mode, record format, LRECL, record count, binary
size and sha256, the -a text view, dates, and the volume's block counts.
"""

from __future__ import annotations

import json
import lzma
from typing import Any

import pytest

from conftest import SHARED
from fsproto.errors import HarnessSetupError
from fsproto.testing import cmsref
from fsproto.testing.cmsref.compare import diff_views, fsproto_view

pytestmark = pytest.mark.reference

IMAGES = SHARED / "images" / "cms"
NAMES = sorted(p.name[: -len(".img.xz")] for p in IMAGES.glob("*.img.xz")) if IMAGES.is_dir() else []


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """cmsfs-fuse's view of every shared image, from one boot (and where the images are)."""
    if not NAMES:
        pytest.skip(f"{IMAGES} holds no images (shared data not provided)")
    try:
        cmsref.prepare()
    except HarnessSetupError as e:
        pytest.fail(f"cmsref prepare: {e}", pytrace=False)
    tmp = tmp_path_factory.mktemp("cmsref-images")
    paths = []
    for name in NAMES:
        dst = tmp / f"{name}.img"
        dst.write_bytes(lzma.decompress((IMAGES / f"{name}.img.xz").read_bytes()))
        paths.append(dst)
    out = dict(zip(NAMES, cmsref.inspect_many(paths)))
    for name, path in zip(NAMES, paths):
        out[name]["image"] = path
    return out


@pytest.mark.parametrize("name", NAMES)
def test_reference_view_equals_manifest(views: dict[str, dict[str, Any]], name: str) -> None:
    manifest = json.loads((IMAGES / f"{name}.json").read_text())
    view = views[name]
    assert view["errors"] == [] and view["daemon_exit"] == {"a": 0, "b": 0}
    assert view["block_size"] == manifest["block_size"]
    assert view["total_blocks"] == manifest["total_blocks"]
    assert view["free_blocks"] == manifest["total_blocks"] - manifest["used_blocks"]
    # directory order: the reference lists FSTs in slot order
    by_slot = sorted(manifest["files"], key=lambda f: f["fst"]["slot"])
    assert [f["path"] for f in view["files"]] == [f"{m['name']}.{m['type']}" for m in by_slot]
    for seen, meant in zip(view["files"], by_slot):
        where = seen["path"]
        assert seen["slot"] == meant["fst"]["slot"], where
        for key in ("mode", "recfm", "lrecl", "records", "size_binary", "sha256_binary", "date"):
            assert seen[key] == meant[key], f"{where}: {key}"
        assert seen["text"] == {"size": meant["cmsfs_ascii_read"]["size"], "sha256": meant["cmsfs_ascii_read"]["sha256"]}, where
        assert seen["errors"] == [], where


@pytest.mark.parametrize("name", NAMES)
def test_fsproto_view_equals_reference_view(views: dict[str, dict[str, Any]], utc: Any, name: str) -> None:
    """fsproto reads every shared image exactly as the reference does, field by field, text
    included (also for records holding 0x15/0x25)."""
    mine, _extras = fsproto_view(views[name]["image"])
    assert diff_views(mine, views[name]["files"]) == []
