"""FAT against independent implementations: mkfs.vfat + mcopy images read back exactly; fsproto's
writes pass ``fsck.vfat -n`` and read back identically through mtools and the Linux kernel's
vfat driver (loop-mounted read-only in a QEMU guest: see tests/fat_vm.py)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

import fat_images
import fat_vm
from fsproto.formats.fat import FORMAT
from fsproto.rawdev import ImageFile
from fsproto.vfs import Filesystem

SIZES = {12: 4 << 20, 16: 24 << 20, 32: 40 << 20}
STAMP = 1_234_567_890_000_000_000  # 2009-02-13 23:31:30 UTC


def make_host_tree(root: Path, seed: int) -> None:
    """Long names, nested directories, a non-ASCII name, empty and multi-cluster files."""
    rnd = random.Random(seed)
    (root / "Deep Dir" / "level two" / "Level Three").mkdir(parents=True)
    (root / "EMPTYDIR").mkdir()
    files = {
        "README.TXT": b"upper-case 8.3 name\n",
        "lower.txt": b"lower-case 8.3 name",
        "A rather long file name with spaces.data": rnd.randbytes(70_000),
        "Deep Dir/level two/Level Three/naïve café.txt": "unicode ✓".encode(),
        "Deep Dir/level two/empty": b"",
        "Deep Dir/exactly.bin": rnd.randbytes(4096),
        "Deep Dir/many.dots.in.name.tar.gz": rnd.randbytes(3000),
    }
    for i in range(30):  # enough entries to need a second directory cluster
        files[f"Deep Dir/level two/entry number {i:02d}.txt"] = f"entry {i}\n".encode() * i
    for k, (rel, data) in enumerate(files.items()):
        (root / rel).write_bytes(data)
        t = 1_700_000_000_000_000_000 + k * 2_000_000_000
        os.utime(root / rel, ns=(t, t))


def host_tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root) if dirpath != str(root) else ""
        for d in dirs:
            out[f"{rel}/{d}"] = None
        for f in files:
            out[f"{rel}/{f}"] = Path(dirpath, f).read_bytes()
    return out


def fs_tree(fs: Filesystem, path: str = "/") -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for st in fs.listdir(path):
        p = path.rstrip("/") + "/" + st.name
        if st.is_dir:
            out[p] = None
            out.update(fs_tree(fs, p))
        else:
            data = fs.read(p, 0, st.size + 10)
            assert len(data) == st.size, p
            out[p] = data
    return out


def mkfs_vfat(img: Path, fat: int) -> None:
    with open(img, "wb") as f:
        f.truncate(SIZES[fat])
    subprocess.run(["mkfs.vfat", "-F", str(fat), "-n", "MTOOLS", str(img)], check=True, capture_output=True)


def mtools_tree(img: Path, tmp: Path) -> dict[str, bytes | None]:
    out = tmp / "mcopy-out"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    listing = subprocess.run(["mdir", "-b", "-i", str(img), "::/"], capture_output=True, text=True).stdout
    if listing.strip():
        subprocess.run(["mcopy", "-s", "-n", "-i", str(img), "::*", str(out)], check=True, capture_output=True)
    return host_tree(out)


def fsck_vfat(img: Path) -> None:
    complaints = fat_images.fsck_vfat_complaints(img)
    assert not complaints, f"fsck.vfat -n {img}: {complaints}"


@pytest.mark.parametrize("fat", [12, 16, 32])
def test_mcopy_image_reads_back_exactly(tmp_path: Path, fat: int) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_host_tree(src, fat)
    img = tmp_path / "m.img"
    mkfs_vfat(img, fat)
    subprocess.run(["mcopy", "-s", "-m", "-i", str(img), *[str(p) for p in sorted(src.iterdir())], "::/"],
                   check=True, capture_output=True)
    dev = ImageFile(img)
    try:
        assert FORMAT.probe(dev)
        with FORMAT.open(dev) as fs:
            assert fs_tree(fs) == host_tree(src)
            assert fs.statfs().label == "MTOOLS"
            st = fs.stat("/README.TXT")
            # mcopy -m keeps the host mtime; FAT holds it to 2 s (mtools writes local time = UTC here).
            assert abs(st.mtime_ns - (src / "README.TXT").stat().st_mtime_ns) <= 2_000_000_000
            assert fs.stat("/deep dir/LEVEL TWO").is_dir  # lookups ignore case, as vfat's do
        report = FORMAT.fsck(dev)
        assert report.clean and not report.problems, [str(p) for p in report.problems]
    finally:
        dev.close()


def random_workload(fs: Filesystem, model: dict[str, bytes | None], seed: int, steps: int) -> None:
    """Random namespace and data operations through fsproto, mirrored in *model*."""
    rnd = random.Random(seed)
    names = ["Alpha File.txt", "beta.bin", "GAMMA.DAT", "a much longer name than eight chars.log",
             "ünïcode näme", "x", "Report 2024.final.pdf"]

    def dirs() -> list[str]:
        return ["/"] + [p for p, v in model.items() if v is None]

    def files() -> list[str]:
        return [p for p, v in model.items() if v is not None]

    def join(d: str, n: str) -> str:
        return d.rstrip("/") + "/" + n

    def free_name(d: str) -> str | None:
        taken = {p.rsplit("/", 1)[1].upper() for p in model if p.rsplit("/", 1)[0] == d.rstrip("/")}
        choices = [n for n in names + [f"dir {k}" for k in range(5)] if n.upper() not in taken]
        return rnd.choice(choices) if choices else None

    for _ in range(steps):
        op = rnd.choice(["create", "create", "write", "write", "truncate", "mkdir", "unlink", "rename", "rmdir"])
        if op in ("create", "mkdir"):
            d = rnd.choice(dirs())
            n = free_name(d)
            if n is None:
                continue
            p = join(d, n)
            if op == "create":
                fs.create(p)
                model[p] = b""
            else:
                fs.mkdir(p)
                model[p] = None
        elif op == "write" and files():
            p = rnd.choice(files())
            old = model[p]
            off = rnd.randrange(0, len(old) + 5000)
            data = rnd.randbytes(rnd.choice([1, 100, 2048, 9000, 40000]))
            fs.write(p, off, data)
            buf = bytearray(old) + bytes(max(0, off - len(old)))
            buf[off : off + len(data)] = data
            model[p] = bytes(buf)
        elif op == "truncate" and files():
            p = rnd.choice(files())
            size = rnd.randrange(0, 50000)
            fs.truncate(p, size)
            model[p] = model[p][:size] + bytes(max(0, size - len(model[p])))
        elif op == "unlink" and files():
            p = rnd.choice(files())
            fs.unlink(p)
            del model[p]
        elif op == "rmdir":
            empty = [d for d in dirs()[1:] if not any(k.startswith(d + "/") for k in model)]
            if empty:
                p = rnd.choice(empty)
                fs.rmdir(p)
                del model[p]
        elif op == "rename" and files():
            p = rnd.choice(files())
            d = rnd.choice(dirs())
            n = free_name(d)
            if n is None:
                continue
            fs.rename(p, join(d, n))
            model[join(d, n)] = model.pop(p)


@pytest.mark.slow
def test_fsproto_writes_pass_fsck_vfat_mtools_and_the_kernel(tmp_path: Path) -> None:
    images, models = [], []
    # (FAT type, sector size): 4096-byte sectors come from a 4096-byte-block device
    for fat, ss in ((12, 512), (16, 512), (32, 512), (16, 4096)):
        img = tmp_path / f"w{fat}-{ss}.img"
        if ss == 4096:
            dev = ImageFile.create(img, 40 << 20, block_size=4096)
            FORMAT.mkfs(dev, fat=fat, label="FOURK")
            dev.close()
            model = {}
        elif fat == 16:  # write into an image mkfs.vfat made and mcopy filled
            mkfs_vfat(img, fat)
            src = tmp_path / "src16"
            src.mkdir()
            make_host_tree(src, 7)
            subprocess.run(["mcopy", "-s", "-i", str(img), *[str(p) for p in sorted(src.iterdir())], "::/"],
                           check=True, capture_output=True)
            model = host_tree(src)
        else:
            dev = ImageFile.create(img, SIZES[fat])
            FORMAT.mkfs(dev, fat=fat, label="FSPROTO")
            dev.close()
            fsck_vfat(img)  # the fresh volume itself
            model = {}
        dev = ImageFile(img, writable=True, block_size=ss)
        with FORMAT.open(dev) as fs:
            random_workload(fs, model, seed=fat + ss, steps=250)
            assert fs_tree(fs) == model
            stamped = sorted(p for p, v in model.items() if v is not None)[:3]
            for k, p in enumerate(stamped):  # even seconds: FAT keeps 2-second resolution
                fs.set_mtime(p, STAMP + k * 86_400_000_000_000)
        dev.close()
        fsck_vfat(img)
        assert mtools_tree(img, tmp_path) == model
        images.append(img)
        models.append(model)
    for model, (tree, mtimes) in zip(models, fat_vm.kernel_listings(images)):
        assert tree == {p: (None if v is None else fat_vm.sha256(v)) for p, v in model.items()}
        stamped = sorted(p for p, v in model.items() if v is not None)[:3]
        # the kernel (guest clock zone UTC) reads back the times fsproto stored
        assert [mtimes[p] for p in stamped] == [(STAMP + k * 86_400_000_000_000) // 10**9 for k in range(3)]


def test_512_byte_sector_image_through_a_4096_byte_block_device(tmp_path: Path) -> None:
    """Sectors smaller than the device's blocks: reads slice blocks, writes read-modify-write."""
    src = tmp_path / "src"
    src.mkdir()
    make_host_tree(src, 5)
    img = tmp_path / "m.img"
    mkfs_vfat(img, 16)
    subprocess.run(["mcopy", "-s", "-i", str(img), *[str(p) for p in sorted(src.iterdir())], "::/"],
                   check=True, capture_output=True)
    model = host_tree(src)
    with ImageFile(img, block_size=4096, writable=True) as dev:
        with FORMAT.open(dev) as fs:
            assert fs_tree(fs) == model
            random_workload(fs, model, seed=99, steps=120)
            assert fs_tree(fs) == model
    fsck_vfat(img)
    assert mtools_tree(img, tmp_path) == model
