"""A power cut in the middle of a writeback flush leaves a disk fsck accepts.

Real mounts (writeback caching on, the default for CMS binary and FAT) over a FaultInjectingDevice
that loses power after N device writes (:func:`fuse_helpers._serve_faulty`). The workload's
small writes sit in the kernel's page cache until close(2) flushes them as a few large WRITE
requests; a first uncut run counts the device writes, then the workload is replayed with the
power cut after each of them in turn. Every cut must leave: fsck without errors (CMS: notices
only; FAT: only the findings fat/fs.py documents for a cut -- lost clusters, a chain longer than
the size, FAT copies not yet equal -- which ``--repair`` fixes, after which both our fsck and
``fsck.vfat`` find nothing),
the untouched file intact, and each page of the written file either its old or its new bytes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fuse_helpers import HERE, PROJECT_ROOT, MountedFs, wait_for_mount

from fsproto.formats.cms import FORMAT as CMS
from fsproto.formats.fat import FORMAT as FAT
from fsproto.rawdev import ImageFile

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300)]

PAGE = 4096
# What a cut may leave on FAT (fat/fs.py's write order): all harmless to readers, all repaired.
FAT_CUT_FINDINGS = {"lost-clusters", "size-mismatch", "fat-copies-differ"}
OLD = bytes((i * 7) & 0xFF for i in range(40_000))
KEEP = b"untouched " * 3000
# 4 KiB writes: overwrite inside the file, then past its end (the file grows by 12 pages).
WRITES = [(off, bytes([0x41 + k % 26]) * PAGE) for k, off in enumerate(range(8192, 8192 + 16 * PAGE, PAGE))]
NEW = bytearray(OLD)
for _off, _data in WRITES:
    NEW[_off : _off + len(_data)] = _data
NEW = bytes(NEW)


def make_image(kind: str, path: Path) -> Path:
    with ImageFile.create(path, 4 << 20) as dev:
        if kind == "cms":
            CMS.mkfs(dev, block_size=1024, label="CUT01")
        else:
            FAT.mkfs(dev, block_size=1024)
        fs = (CMS if kind == "cms" else FAT).open(dev)
        for name, data in (("/BIG.DATA", OLD), ("/KEEP.DATA", KEEP)):
            fs.create(name)
            fs.write(name, 0, data)
        fs.close()
    return path


def run_workload(image: Path, tmp: Path, cut: int | None) -> int:
    """Mount through the faulty device, write, close (the flush), unmount; returns writes seen."""
    mp = tmp / "mnt"
    mp.mkdir(exist_ok=True)
    log = tmp / "mount.log"
    log.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "fuse_helpers.py"), "faulty", str(image), str(mp), str(log),
           "none" if cut is None else str(cut)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=PROJECT_ROOT)
    m = MountedFs(mp, log, proc)
    try:
        wait_for_mount(mp, proc)
        try:
            fd = os.open(mp / "BIG.DATA", os.O_WRONLY)
            try:
                for off, data in WRITES:
                    os.pwrite(fd, data, off)
            finally:
                os.close(fd)  # FUSE flushes the dirty pages here: the cut falls in this flush
        except OSError:
            assert cut is not None  # after the cut the daemon may read back lost blocks: EIO
        m.unmount()
    finally:
        m.cleanup()
    found = re.search(r"writes_seen=(\d+)", m.log_text())
    assert found, m.log_text()
    return int(found.group(1))


def check(kind: str, image: Path) -> None:
    fmt = CMS if kind == "cms" else FAT
    with ImageFile(image) as dev:
        report = fmt.fsck(dev)
    if kind == "cms":
        assert not report.errors, [str(p) for p in report.problems]
    else:
        assert {p.code for p in report.problems} <= FAT_CUT_FINDINGS, [str(p) for p in report.problems]
        with ImageFile(image, writable=True) as dev:
            fmt.fsck(dev, repair=True)
        with ImageFile(image) as dev:
            again = fmt.fsck(dev)
        assert again.clean and not again.problems, [str(p) for p in again.problems]
        r = subprocess.run(["fsck.vfat", "-n", str(image)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    with ImageFile(image) as dev:
        fs = fmt.open(dev)
        try:
            assert fs.read("/KEEP.DATA", 0, 1 << 20) == KEEP
            got = fs.read("/BIG.DATA", 0, 1 << 20)
        finally:
            fs.close()
    assert len(OLD) <= len(got) <= len(NEW)
    for i in range(0, len(got), PAGE):
        page = got[i : i + PAGE]
        assert page in (NEW[i : i + len(page)], OLD[i : i + len(page)]), f"page at {i} is neither old nor new"


@pytest.mark.parametrize("kind", ["cms", "fat"])
def test_power_cut_at_each_write_of_a_writeback_flush(kind: str, tmp_path: Path):
    pristine = make_image(kind, tmp_path / "pristine.img")
    image = tmp_path / "run.img"
    image.write_bytes(pristine.read_bytes())
    total = run_workload(image, tmp_path, None)
    check(kind, image)
    with ImageFile(image) as dev:
        fs = (CMS if kind == "cms" else FAT).open(dev)
        assert fs.read("/BIG.DATA", 0, 1 << 20) == NEW  # the uncut run wrote everything
        fs.close()
    assert total > 2
    for cut in range(total):
        image.write_bytes(pristine.read_bytes())
        run_workload(image, tmp_path, cut)
        check(kind, image)
