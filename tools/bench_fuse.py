#!/usr/bin/env python3
"""Benchmark the FUSE mount against kernel tmpfs and a null pyfuse3 filesystem, in one run.

    python tools/bench_fuse.py [--baseline-rev main] [--size-mib 256] [--small-mib 64]
                               [--files 10000] [--tar-files 5000] [--repeat 2]

Targets (issue 12), each printed as a figure and a ratio to its baseline from the same run:

* ``4k write`` / ``4k read``: SMALL MiB in 4 KiB calls (the write timed until close(2)
  returned: FUSE's flush on close sends the kernel's cached pages, so the data has reached the
  format); the read after the file's pages were dropped (fadvise DONTNEED). On a CMS binary mount and a FAT mount, ratio to a
  kernel tmpfs the bench mounts itself; also CMS with ``-o noxattr`` (this tree only).
* ``1M read cold``: a SIZE MiB file read in 1 MiB calls right after a fresh mount, ratio to a
  null pyfuse3 filesystem (:class:`NullFs`, below) that serves the same number of bytes from
  memory through the same kind of mount.
* ``ls -l cold`` / ``warm``: of FILES files on CMS, the first listing after a fresh mount and the
  second; ratio to the same listing on tmpfs.
* ``tar x``: a TAR_FILES-file tree (sizes 0-64 KiB, seeded) extracted onto a FAT mount and
  unmounted (flushed), then ``fsproto fsck`` and ``fsck.vfat -n`` of the image; time ratio to
  tmpfs (lower is better for times).

``--baseline-rev REV`` runs every mount also with the fsproto of git revision REV (extracted with
``git archive``), alternating with this tree target by target, and prints ``new/old`` ratios
(for times, old/new: above 1 means this tree is faster). Each figure is the best of REPEAT
runs (the machine is shared). Nothing is asserted: speed goals live here, not in tests.

``--serve-null MOUNTPOINT SIZE`` (internal) serves the null filesystem in the foreground.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fuse_helpers import force_unmount, wait_for_mount  # noqa: E402

CHUNK = 1 << 20
SMALL = 4096


# -- the null filesystem: the ceiling of a pyfuse3 mount serving bytes from memory -------------
def serve_null(mountpoint: str, size: int) -> None:
    """One read-only file ``/DATA`` of *size* bytes, served as memoryview slices of one buffer.

    Same kernel-facing settings as fsproto's mount defaults (10 s timeouts, keep_cache), so the
    ratio measures the adapter and the format, not the knobs.
    """
    import errno
    import stat

    import pyfuse3
    import trio

    data = memoryview(bytes(range(256)) * (size // 256) + bytes(size % 256))
    data_inode = pyfuse3.ROOT_INODE + 1

    class NullFs(pyfuse3.Operations):
        def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
            a = pyfuse3.EntryAttributes()
            a.st_ino = inode
            a.entry_timeout = a.attr_timeout = 10.0
            if inode == pyfuse3.ROOT_INODE:
                a.st_mode, a.st_nlink = stat.S_IFDIR | 0o755, 2
            else:
                a.st_mode, a.st_nlink, a.st_size = stat.S_IFREG | 0o444, 1, size
            a.st_blksize = 4096
            a.st_blocks = (a.st_size + 511) // 512
            return a

        async def getattr(self, inode, ctx=None):
            return self._attr(inode)

        async def lookup(self, parent, name, ctx=None):
            if parent != pyfuse3.ROOT_INODE or name != b"DATA":
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attr(data_inode)

        async def open(self, inode, flags, ctx):
            fi = pyfuse3.FileInfo(fh=inode)
            fi.keep_cache = True
            return fi

        async def read(self, fh, off, size_):
            return data[off : off + size_]

    pyfuse3.init(NullFs(), mountpoint, {"fsname=nullfs", "ro"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


# -- measuring ----------------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def write_file(path: Path, size: int, chunk: int, *, fsync: bool = True) -> None:
    block = os.urandom(chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(size // chunk):
            os.write(fd, block)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)  # on FUSE this also sends the kernel's cached writes to the daemon


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_file(path: Path, chunk: int) -> int:
    total = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while data := os.read(fd, chunk):
            total += len(data)
    finally:
        os.close(fd)
    return total


def ls_l(directory: Path) -> float:
    return timed(lambda: subprocess.run(["ls", "-l", str(directory)], stdout=subprocess.DEVNULL, check=True))


def small_io(directory: Path, total: int) -> dict[str, float]:
    """MB/s of 4 KiB writes (until close returned: on FUSE the data is then in the format; no
    fsync, which is free on tmpfs but flushes the device under a mount) and 4 KiB reads (pages
    dropped first)."""
    f = directory / "SMALL.DATA"
    out = {"4k write": total / 1e6 / timed(lambda: write_file(f, total, SMALL, fsync=False))}
    drop_cache(f)
    out["4k read"] = total / 1e6 / timed(lambda: read_file(f, SMALL))
    f.unlink()
    return out


def make_tar(path: Path, count: int, seed: int = 12) -> int:
    """A tree of *count* files, sizes 0-64 KiB, in 50 directories; returns its bytes."""
    rnd = random.Random(seed)
    blob = rnd.randbytes(1 << 20)
    total = 0
    with tarfile.open(path, "w") as tar:
        for d in range(50):
            info = tarfile.TarInfo(f"tree/d{d:02d}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for i in range(count):
            size = rnd.randrange(0, 64 << 10)
            off = rnd.randrange(0, len(blob) - size + 1)
            info = tarfile.TarInfo(f"tree/d{i % 50:02d}/file{i:05d}.bin")
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(blob[off : off + size]))
            total += size
    return total


def tar_x(tar: Path, dest: Path) -> float:
    return timed(lambda: subprocess.run(["tar", "-x", "--no-same-owner", "-f", str(tar), "-C", str(dest)],
                                        check=True))


# -- mounts ---------------------------------------------------------------------------------------
class Mount:
    """``fsproto mount --foreground`` of *image* with the fsproto of *tree*, in a child process."""

    def __init__(self, mp: Path, cmd: list[str], tree: Path, log: Path) -> None:
        self.mp = mp
        mp.mkdir(exist_ok=True)
        # PYTHONPATH first: a baseline tree's fsproto wins over the installed (this) one.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(cmd, cwd=tree, stderr=open(log, "ab"), env=env)
        wait_for_mount(mp, self.proc, timeout=300)

    @classmethod
    def fsproto(cls, image: Path, mp: Path, tree: Path, opts: list[str]) -> "Mount":
        log = mp.parent / "mount.log"
        cmd = [sys.executable, "-m", "fsproto", "mount", "--foreground", "--log", str(log), *opts, str(image), str(mp)]
        return cls(mp, cmd, tree, log)

    @classmethod
    def null(cls, mp: Path, size: int) -> "Mount":
        return cls(mp, [sys.executable, __file__, "--serve-null", str(mp), str(size)], ROOT, mp.parent / "null.log")

    def close(self) -> None:
        force_unmount(self.mp)
        try:
            self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Mount":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cms_image(path: Path, size: int, files: int) -> None:
    """A CMS minidisk (4 KiB blocks) with *files* small files and room for a SIZE file twice."""
    from fsproto.formats.cms import FORMAT
    from fsproto.rawdev import ImageFile

    with ImageFile.create(path, size * 2 + files * 8192 + (256 << 20), block_size=4096) as dev:
        FORMAT.mkfs(dev, block_size=4096, label="BENCH")
        fs = FORMAT.open(dev)
        for i in range(files):
            name = f"/F{i:07d}.DATA"
            fs.create(name)
            fs.write(name, 0, b"%d\n" % i)
        fs.close()


def fat_image(path: Path, size: int) -> None:
    from fsproto.formats.fat import FORMAT
    from fsproto.rawdev import ImageFile

    with ImageFile.create(path, size) as dev:
        FORMAT.mkfs(dev, fat=32, label="BENCH")


def fresh_copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst


def fsck_verdicts(image: Path) -> str:
    ours = subprocess.run([sys.executable, "-m", "fsproto", "fsck", str(image)], cwd=ROOT, capture_output=True,
                          text=True)
    ref = subprocess.run(["fsck.vfat", "-n", str(image)], capture_output=True, text=True)
    return f"fsproto fsck {ours.returncode}, fsck.vfat -n {ref.returncode}"


# -- one tree's figures ------------------------------------------------------------------------------
def run_cms(tree: Path, pristine: Path, work: Path, a: argparse.Namespace, opts: list[str] | None = None,
            small_only: bool = False) -> dict[str, float]:
    img = fresh_copy(pristine, work / "cms-run.img")
    mp = work / "mnt"
    out: dict[str, float] = {}
    try:
        with Mount.fsproto(img, mp, tree, opts or []) as m:
            for _ in range(a.repeat):
                for k, v in small_io(m.mp, a.small_mib << 20).items():
                    out[k] = max(out.get(k, 0.0), v)
            if small_only:
                return out
            write_file(m.mp / "BIG.DATA", a.size_mib << 20, CHUNK)
        for _ in range(a.repeat):
            with Mount.fsproto(img, mp, tree, []) as m:
                out["ls cold"] = min(out.get("ls cold", 1e9), ls_l(m.mp))
                out["ls warm"] = min(out.get("ls warm", 1e9), ls_l(m.mp))
                mb = (a.size_mib << 20) / 1e6
                out["1M read cold"] = max(out.get("1M read cold", 0.0), mb / timed(lambda: read_file(m.mp / "BIG.DATA", CHUNK)))
    finally:
        img.unlink()
    return out


def run_fat(tree: Path, pristine: Path, tar: Path, work: Path, a: argparse.Namespace) -> tuple[dict[str, float], str]:
    mp = work / "mnt"
    out: dict[str, float] = {}
    verdict = ""
    for r in range(a.repeat):
        img = fresh_copy(pristine, work / "fat-run.img")
        try:
            with Mount.fsproto(img, mp, tree, []) as m:
                if r == 0:
                    for k, v in small_io(m.mp, a.small_mib << 20).items():
                        out[k] = max(out.get(k, 0.0), v)
                    write_file(m.mp / "BIG.DATA", a.size_mib << 20, CHUNK)
                t = time.perf_counter()
                subprocess.run(["tar", "-x", "--no-same-owner", "-f", str(tar), "-C", str(m.mp)], check=True)
                m.close()  # unmount: the daemon flushes before it exits, part of the time
                out["tar x"] = min(out.get("tar x", 1e9), time.perf_counter() - t)
            verdict = fsck_verdicts(img)
            if r == 0:
                with Mount.fsproto(img, mp, tree, []) as m:
                    mb = (a.size_mib << 20) / 1e6
                    out["1M read cold"] = mb / timed(lambda: read_file(m.mp / "BIG.DATA", CHUNK))
        finally:
            img.unlink()
    return out, verdict


def run_tmpfs(work: Path, tar: Path, a: argparse.Namespace) -> dict[str, float]:
    mp = work / "tmpfs"
    mp.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.size_mib + a.small_mib + 512}m", "bench", str(mp)],
                   check=True)
    out: dict[str, float] = {}
    try:
        for _ in range(a.repeat):
            for k, v in small_io(mp, a.small_mib << 20).items():
                out[k] = max(out.get(k, 0.0), v)
        many = mp / "many"
        many.mkdir()
        for i in range(a.files):
            (many / f"F{i:07d}.DATA").write_bytes(b"%d\n" % i)
        subprocess.run(["sync"], check=True)
        out["ls cold"] = min(ls_l(many) for _ in range(a.repeat))
        out["ls warm"] = out["ls cold"]
        shutil.rmtree(many)
        times = []
        for _ in range(a.repeat):
            dest = mp / "x"
            dest.mkdir()
            times.append(tar_x(tar, dest))
            shutil.rmtree(dest)
        out["tar x"] = min(times)
    finally:
        subprocess.run(["umount", str(mp)], check=True)
    return out


def run_null(work: Path, a: argparse.Namespace) -> float:
    mp = work / "null"
    best = 0.0
    for _ in range(a.repeat):
        with Mount.null(mp, a.size_mib << 20) as m:
            best = max(best, (a.size_mib << 20) / 1e6 / timed(lambda: read_file(m.mp / "DATA", CHUNK)))
    return best


# -- report -------------------------------------------------------------------------------------------
RATE_COLS = ["4k write", "4k read", "1M read cold"]
TIME_COLS = ["ls cold", "ls warm", "tar x"]


def cell(value: float | None, ratio: float | None, unit: str) -> str:
    if value is None:
        return f"{'-':>18}"
    text = f"{value:.0f}" if unit == "MB/s" else f"{value:.2f}s"
    return f"{text + (f' ({ratio:.2f})' if ratio is not None else ''):>18}"


def print_row(title: str, figs: dict[str, float], tmpfs: dict[str, float], null: float) -> None:
    cells = []
    for c in RATE_COLS:
        v = figs.get(c)
        base = null if c == "1M read cold" else tmpfs.get(c)
        cells.append(cell(v, v / base if v is not None and base else None, "MB/s"))
    for c in TIME_COLS:
        v = figs.get(c)
        cells.append(cell(v, v / tmpfs[c] if v is not None and tmpfs.get(c) else None, "s"))
    print(f"{title:<22}" + "".join(cells), flush=True)


def print_vs(label: str, new: dict[str, float], old: dict[str, float]) -> None:
    cells = []
    for c in RATE_COLS + TIME_COLS:
        if c in new and c in old:
            r = new[c] / old[c] if c in RATE_COLS else old[c] / new[c]
            cells.append(f"{'x ' + format(r, '.2f'):>18}")
        else:
            cells.append(f"{'-':>18}")
    print(f"{'  vs @' + label:<22}" + "".join(cells), flush=True)


def extract_tree(rev: str, dest: Path) -> Path:
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "fsproto"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-null":
        serve_null(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256, help="the large file (1 MiB cold reads)")
    ap.add_argument("--small-mib", type=int, default=64, help="bytes moved in 4 KiB calls")
    ap.add_argument("--files", type=int, default=10_000, help="files in the CMS directory listed by ls -l")
    ap.add_argument("--tar-files", type=int, default=5_000, help="files in the tree tar extracts onto FAT")
    ap.add_argument("--repeat", type=int, default=2, help="runs per figure; the best is kept")
    ap.add_argument("--workdir", type=Path, default=None, help="where images and mounts go")
    ap.add_argument("--baseline-rev", default=None, help="also run the fsproto of this git revision, alternating")
    ap.add_argument("--formats", default="cms,fat", help="comma-separated subset of cms,fat")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_fuse.py mounts a tmpfs: run it as root", file=sys.stderr)
        return 2
    fmts = a.formats.split(",")
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        tar = work / "tree.tar"
        tar_bytes = make_tar(tar, a.tar_files)
        tmpfs = run_tmpfs(work, tar, a)
        null = run_null(work, a)
        trees = [(a.baseline_rev, extract_tree(a.baseline_rev, work / "baseline-tree"))] if a.baseline_rev else []
        trees.append(("", ROOT))
        print(f"{a.small_mib} MiB in 4 KiB calls, {a.size_mib} MiB file, ls -l of {a.files} files, "
              f"tar x of {a.tar_files} files ({tar_bytes / 1e6:.0f} MB); best of {a.repeat}")
        print("MB/s or seconds (ratio: 4k to tmpfs, 1M read cold to the null pyfuse3 fs, times to tmpfs)")
        print(f"{'':<22}" + "".join(f"{c:>18}" for c in RATE_COLS + TIME_COLS))
        print_row("tmpfs", tmpfs, tmpfs, null)
        print_row("null pyfuse3", {"1M read cold": null}, tmpfs, null)
        if "cms" in fmts:
            pristine = work / "cms.img"
            cms_image(pristine, a.size_mib << 20, a.files)
            figs = {}
            for label, tree in trees:
                figs[label] = run_cms(tree, pristine, work, a)
                print_row(f"CMS binary @{label}" if label else "CMS binary", figs[label], tmpfs, null)
            if a.baseline_rev:
                print_vs(a.baseline_rev, figs[""], figs[a.baseline_rev])
            # Without readable xattrs the kernel stops its GETXATTR before every write(2).
            print_row("CMS binary -o noxattr", run_cms(ROOT, pristine, work, a, ["-o", "noxattr"], True), tmpfs, null)
            pristine.unlink()
        if "fat" in fmts:
            pristine = work / "fat.img"
            fat_image(pristine, ((a.size_mib + a.small_mib) << 21) + (-(-tar_bytes * 2 // CHUNK) << 20) + (256 << 20))
            figs = {}
            verdicts = {}
            for label, tree in trees:
                figs[label], verdicts[label] = run_fat(tree, pristine, tar, work, a)
                print_row(f"FAT32 @{label}" if label else "FAT32", figs[label], tmpfs, null)
            if a.baseline_rev:
                print_vs(a.baseline_rev, figs[""], figs[a.baseline_rev])
            for label, v in verdicts.items():
                print(f"after tar x on FAT32{' @' + label if label else ''}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
