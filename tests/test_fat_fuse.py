"""FAT through the FUSE mount (``fsproto mount``, the real CLI in a child process): ordinary
file tools write through it; after a clean unmount ``fsck.vfat -n`` finds nothing and the Linux
kernel's vfat driver (tests/fat_vm.py) sees exactly the tree and bytes the tools wrote."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from fuse_helpers import MountedFs, bad_log_lines, is_mounted, start_cli_mount

import fat_images
import fat_vm
from fsproto.formats.fat import FORMAT
from fsproto.rawdev import ImageFile

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300)]


def os_tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        rel = "" if dirpath == str(root) else "/" + os.path.relpath(dirpath, root)
        for d in dirs:
            out[f"{rel}/{d}"] = None
        for f in files:
            out[f"{rel}/{f}"] = Path(dirpath, f).read_bytes()
    return out


def mount(image: Path, mp: Path, log: Path) -> MountedFs:
    return start_cli_mount(image, mp, log, "--format", "fat")


def tool_workload(mp: Path, src: Path, seed: int) -> None:
    """cp -r, mkdir -p, appends, truncate, mv across directories, rm, rmdir: what users do."""
    rnd = random.Random(seed)
    subprocess.run(["cp", "-r", str(src / "Project Files"), str(mp)], check=True)
    (mp / "Nested" / "Deeper" / "Deepest").mkdir(parents=True)
    big = mp / "Nested" / "Deeper" / "a big file with a long name.bin"
    with open(big, "wb") as f:
        for _ in range(20):
            f.write(rnd.randbytes(rnd.randrange(1, 70000)))
    with open(big, "r+b") as f:
        f.seek(12345)
        f.write(b"overwritten in the middle")
    with open(mp / "Nested" / "log.txt", "a") as f:
        for i in range(200):
            f.write(f"line {i}\n")
    os.truncate(mp / "Nested" / "log.txt", 777)
    os.rename(big, mp / "Nested" / "Deeper" / "Deepest" / "moved.bin")
    os.rename(mp / "Project Files" / "notes.md", mp / "NOTES.MD")
    os.unlink(mp / "Project Files" / "delete me.tmp")
    (mp / "Empty To Remove").mkdir()
    os.rmdir(mp / "Empty To Remove")
    shutil.copy(src / "Project Files" / "data 1.bin", mp / "Nested" / "copy.bin")
    (mp / "Nested" / "emoji 😀 outside the BMP.txt").write_text("a UTF-16 surrogate pair in the long name")


def make_src(tmp: Path) -> Path:
    rnd = random.Random(3)
    src = tmp / "src"
    (src / "Project Files" / "sub dir").mkdir(parents=True)
    (src / "Project Files" / "notes.md").write_text("# notes\n" * 50)
    (src / "Project Files" / "delete me.tmp").write_bytes(b"tmp")
    (src / "Project Files" / "data 1.bin").write_bytes(rnd.randbytes(200_000))
    (src / "Project Files" / "sub dir" / "Ünïcode ✓.txt").write_text("unicode")
    for i in range(40):
        (src / "Project Files" / "sub dir" / f"file {i:02d} with a long name.txt").write_text(f"{i}\n" * i)
    return src


def test_tools_write_through_fuse_then_fsck_vfat_and_the_kernel_agree(tmp_path: Path) -> None:
    src = make_src(tmp_path)
    images, models = [], []
    for fat in (16, 32):
        img = tmp_path / f"fuse{fat}.img"
        if fat == 16:
            with open(img, "wb") as f:
                f.truncate(24 << 20)
            subprocess.run(["mkfs.vfat", "-F", "16", str(img)], check=True, capture_output=True)
        else:
            with ImageFile.create(img, 40 << 20) as dev:
                FORMAT.mkfs(dev, fat=32, label="FUSE")
        mp, log = tmp_path / f"mnt{fat}", tmp_path / f"mount{fat}.log"
        m = mount(img, mp, log)
        try:
            tool_workload(mp, src, fat)
            model = os_tree(mp)
            m.unmount()
        finally:
            m.cleanup()
        assert not is_mounted(mp)
        assert not bad_log_lines(log), "\n".join(bad_log_lines(log))
        assert len(model) > 45 and model["/NOTES.MD"] == (src / "Project Files" / "notes.md").read_bytes()
        assert fat_images.fsck_vfat_complaints(img) == []
        with ImageFile(img) as dev:
            report = FORMAT.fsck(dev)
            assert not report.problems, [str(p) for p in report.problems]
        m = mount(img, mp, log)  # and it reads back the same through a fresh mount
        try:
            assert os_tree(mp) == model
            m.unmount()
        finally:
            m.cleanup()
        images.append(img)
        models.append(model)
    for model, tree in zip(models, fat_vm.kernel_trees(images)):
        assert tree == {p: (None if v is None else fat_vm.sha256(v)) for p, v in model.items()}
