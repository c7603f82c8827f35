"""fsx-style differential test: >= 100,000 seeded random operations on a MemFS mount, a CMS
minidisk mount and a FAT mount, each checked against the same operation on a reference
directory. The CMS and FAT mounts run with their defaults (writeback caching on), with mapped
reads and writes, and keep descriptors open across unlink and rename-over (orphans).
Set FSX_SEED to replay a seed; a failure prints the seed and the last operations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fsx import Fsx, FsxConfig, FsxFailure
from fuse_helpers import CmsMount, bad_log_lines, fsck_clean, make_image, start_cli_mount, start_memfs

SEED = int(os.environ.get("FSX_SEED", "20261124"))
NOPS = 100_000


@pytest.mark.mount
@pytest.mark.timeout(600)
def test_fsx_memfs(tmp_path: Path):
    ref = tmp_path / "ref"
    ref.mkdir()
    m = start_memfs(tmp_path)
    try:
        fsx = Fsx(m.mountpoint, ref, SEED, FsxConfig(max_size=128 << 10, max_io=8 << 10))
        counts = fsx.run(NOPS)
        assert sum(counts.values()) == NOPS
        assert all(counts[op] > 1000 for op in ("write", "read", "truncate", "rename"))
        m.unmount()
    finally:
        m.cleanup()
    assert not bad_log_lines(m.log)


def test_fsx_detects_a_difference_and_reports_the_seed(tmp_path: Path):
    """The checker itself: two plain directories, one silently changed, must be told apart."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    fsx = Fsx(a, b, seed=7, config=FsxConfig(compare_every=10**9))
    fsx.run(300)
    victim = next(p for p in sorted(a.iterdir()) if p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(FsxFailure, match=r"fsx seed=7 failed at op \d+: contents of") as e:
        fsx.compare_all()
    assert "last operations:" in str(e.value)


@pytest.mark.mount
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fsx_cms(tmp_path: Path):
    """512-byte blocks and files up to 96 KiB: pointer trees grow to two levels (128 pointers
    per block) and shrink back, so the level changes run thousands of times."""
    ref = tmp_path / "ref"
    ref.mkdir()
    m = CmsMount(tmp_path, make_image(tmp_path / "fsx.img", size=4 << 20, block_size=512))
    try:
        fsx = Fsx(m.mount(), ref, SEED, FsxConfig(max_size=96 << 10, max_io=8 << 10, mmap=True, keep_open=True))
        counts = fsx.run(NOPS)
        assert sum(counts.values()) == NOPS
        assert all(counts[op] > 1000 for op in ("mapwrite", "mapread", "unlink", "rename"))
        m.unmount()
        fsck_clean(m.image)
        # Persistence: everything compares equal after a remount too.
        fsx.roots = (m.mount(), ref)
        fsx.compare_all()
        m.unmount()
    finally:
        m.cleanup()
    fsck_clean(m.image)
    assert not bad_log_lines(m.log)


@pytest.mark.mount
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fsx_fat(tmp_path: Path):
    """FAT16 with 512-byte clusters: chains grow and shrink by hundreds of clusters; fsck.vfat
    (the reference) and our fsck must both find the volume clean afterwards."""
    import subprocess

    from fsproto.formats.fat import FORMAT
    from fsproto.rawdev import ImageFile

    ref = tmp_path / "ref"
    ref.mkdir()
    image = tmp_path / "fsx.img"
    with ImageFile.create(image, 8 << 20) as dev:
        FORMAT.mkfs(dev, fat=16, block_size=512)
    log = tmp_path / "mount.log"
    m = start_cli_mount(image, tmp_path / "mnt", log)
    try:
        fsx = Fsx(m.mountpoint, ref, SEED, FsxConfig(max_size=96 << 10, max_io=8 << 10, mmap=True, keep_open=True))
        counts = fsx.run(NOPS)
        assert sum(counts.values()) == NOPS
        m.unmount()
        m.cleanup()
        r = subprocess.run(["fsck.vfat", "-n", str(image)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        with ImageFile(image) as dev:
            report = FORMAT.fsck(dev)
        assert report.clean, "\n".join(map(str, report.problems))
        m = start_cli_mount(image, tmp_path / "mnt", log)
        fsx.roots = (m.mountpoint, ref)
        fsx.compare_all()
        m.unmount()
    finally:
        m.cleanup()
    assert not bad_log_lines(log)
